"""``deploybench drift``: compare the inputs a deployment logged (``--log-predictions``)
with its bundle's reference, print which features moved, and exit :data:`EXIT_DRIFT` when
any did (a CI gate); ``--write-reference BUNDLE`` (re)writes a reference file.

The statistics are :mod:`targets.drift`'s; this module picks the bundle and the reference,
reads the log and prints. See docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError
from harness.results import atomic_write_text
from targets import drift, predlog
from targets.bundles import user
from targets.bundles.protocol import BUILTIN_BUNDLES, Bundle
from targets.bundles.resolve import get_bundle
from targets.drift import DriftError, Reference

#: Some feature moved (PSI at or above --psi-threshold). 3 is `compare --fail-on`'s,
#: 4 `run --strict`'s.
EXIT_DRIFT = 5
#: `--reference examples`: the bundle's example requests stand in for training data.
EXAMPLES = "examples"


def add_drift_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dr = sub.add_parser(
        "drift", help="compare the inputs a deployment logged (--log-predictions) with the "
                      f"bundle's training inputs; exit {EXIT_DRIFT} when a feature moved",
        description="Per drift feature (digits: its 64 pixels; vision: channel means and "
                    "standard deviations and a 4x4 grid of brightness means; a bundle's own "
                    "drift_features()), the population stability index over the reference's "
                    "deciles and the two-sample Kolmogorov-Smirnov test against the "
                    "reference's quantiles. PSI below 0.1 is stable, 0.1 to 0.25 moderate, "
                    f"from 0.25 moved. Exit {EXIT_DRIFT} when any feature moved, 0 when none "
                    "did, 1 for an unusable log or reference. See docs/monitoring.md.")
    dr.add_argument("log_dir", type=Path, nargs="?", default=None,
                    help="the prediction log's folder (a target's NAME-predictions)")
    dr.add_argument("--bundle", default=None,
                    help="the bundle the log was served with (default: the one its rows "
                         "name; a user bundle's path or model:... for your own)")
    dr.add_argument("--reference", default=None, metavar="FILE.json|examples",
                    help="the reference: a file written by --write-reference, or "
                         f"'{EXAMPLES}' (the bundle's example requests: coarse) (default: "
                         "the built-in bundle's shipped one)")
    dr.add_argument("--reference-inputs", type=Path, default=None, metavar="FILE.npy",
                    help="compute the reference from these training inputs, an array of "
                         "shape (N, *input_shape) saved with numpy.save")
    dr.add_argument("--psi-threshold", type=float, default=drift.MOVED, metavar="X",
                    help="a feature moved when its PSI is at least X (default 0.25)")
    dr.add_argument("--top", type=non_negative_int, default=20, metavar="N",
                    help="print the N most shifted features (default 20; 0: all)")
    dr.add_argument("--json", action="store_true",
                    help="print the result as JSON instead of a table")
    dr.add_argument("--write-reference", default=None, metavar="BUNDLE",
                    help="instead of checking a log, (re)compute BUNDLE's reference from its "
                         "training inputs (or --reference-inputs) and write it: a built-in's "
                         "shipped file, or --out")
    dr.add_argument("--out", type=Path, default=None, metavar="FILE.json",
                    help="with --write-reference: where to write it")
    dr.set_defaults(func=cmd_drift)


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (got {text!r})")
    return value


#: Logged examples summarised at a time: a vision log is read 256 images (150 MB) at a
#: time, never whole.
CHUNK = 256


def cmd_drift(args: argparse.Namespace) -> int:
    _check_options(args)
    if args.write_reference is not None:
        return _write_reference(args)
    logged_bundle = _first_bundle(args.log_dir)
    bundle = _bundle(args.bundle or logged_bundle, logged_bundle)
    reference = _reference(bundle, args)
    names, matrix = _logged_features(args.log_dir, bundle)
    try:
        results = drift.compare(reference, names, matrix, args.psi_threshold)
    except DriftError as exc:
        raise UserError(str(exc)) from exc
    distinct = drift.distinct_examples(matrix)
    warnings = []
    if distinct < drift.MIN_EXAMPLES:
        warnings.append(
            f"only {distinct} distinct example{'s' if distinct != 1 else ''} logged "
            f"({len(matrix)} in all; fewer than {drift.MIN_EXAMPLES}): the figures are mostly "
            "sampling noise, not trustworthy (64 unshifted digits examples average a PSI of "
            "~0.1 and flag 1 to 7 of 64 features by chance). Log more real traffic before "
            "reading them")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    moved = [r for r in results if r.moved]
    if args.json:
        print(json.dumps(_document(args, bundle, reference, len(matrix), distinct, results,
                                   warnings), indent=2, allow_nan=False))
    else:
        _print_table(args, bundle, reference, len(matrix), distinct, results)
    return EXIT_DRIFT if moved else 0


def _check_options(args: argparse.Namespace) -> None:
    if args.write_reference is not None:
        if args.log_dir is not None or args.reference is not None:
            raise UserError("--write-reference writes a reference and checks no log: drop "
                            "LOG_DIR and --reference (its inputs: --reference-inputs)")
        return
    if args.out is not None:
        raise UserError("--out names the file --write-reference writes; checking a log "
                        "writes nothing (--json prints the result)")
    if args.log_dir is None:
        raise UserError("name the prediction log's folder: `deploybench drift LOG_DIR` (a "
                        "target's NAME-predictions folder, written with --log-predictions)")
    if args.reference is not None and args.reference_inputs is not None:
        raise UserError("give one reference: --reference or --reference-inputs")
    if args.psi_threshold <= 0 or not math.isfinite(args.psi_threshold):
        raise UserError(f"--psi-threshold must be a positive number (got {args.psi_threshold})")


def _first_bundle(log_dir: Path) -> str:
    """The bundle the log's first row names; a clear error for a missing or empty log."""
    if not log_dir.is_dir():
        raise UserError(f"no prediction log folder {log_dir}: give the folder a target "
                        "logged into (NAME-predictions beside its log, or "
                        "--prediction-log-dir)")
    if not predlog.databases(log_dir):
        raise UserError(f"no prediction log in {log_dir} (no {predlog.LOG_GLOB}): was the "
                        "target run with --log-predictions RATE?")
    try:
        first = next(iter(predlog.read_log(log_dir)), None)
    except (ValueError, OSError, sqlite3.Error) as exc:
        raise UserError(f"cannot read the prediction log in {log_dir} ({exc})") from exc
    if first is None:
        raise UserError(f"the prediction log in {log_dir} is empty: no request was logged "
                        "yet (a rate of 0.01 logs one request in a hundred)")
    return first.bundle


def _logged_features(log_dir: Path, bundle: Bundle) -> tuple[list[str], np.ndarray]:
    """The drift features of every logged example, read request by request and summarised
    :data:`CHUNK` examples at a time. One bundle's log of one input shape, finite."""
    names: list[str] = []
    parts: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    first: predlog.LoggedRequest | None = None

    def summarise() -> None:
        nonlocal names
        chunk_names, matrix = drift.features(bundle, np.concatenate(pending))
        names = chunk_names
        parts.append(matrix)
        pending.clear()

    try:
        for logged in predlog.read_log(log_dir):
            if first is None:
                first = logged
                if logged.input.shape[1:] != tuple(bundle.input_shape):
                    raise UserError(f"the log in {log_dir} holds examples of shape "
                                    f"{logged.input.shape[1:]}, bundle {bundle.name} takes "
                                    f"{tuple(bundle.input_shape)}")
            elif logged.bundle != first.bundle:
                raise UserError(f"the log in {log_dir} mixes bundles ({first.bundle}, "
                                f"{logged.bundle}): check one bundle's log at a time")
            if logged.input.shape[1:] != first.input.shape[1:]:
                raise UserError(f"the log in {log_dir} mixes input shapes "
                                f"({first.input.shape[1:]}, {logged.input.shape[1:]})")
            if not np.isfinite(logged.input).all():
                raise UserError(f"the log in {log_dir} holds inputs that are not finite "
                                "numbers (NaN or infinity): no drift figure is defined for "
                                "them")
            pending.append(logged.input)
            if sum(len(p) for p in pending) >= CHUNK:
                summarise()
        if pending:
            summarise()
    except (ValueError, OSError, sqlite3.Error) as exc:
        raise UserError(f"cannot read the prediction log in {log_dir} ({exc})") from exc
    return names, np.concatenate(parts)


def _bundle(spec: str, logged: str | None) -> Bundle:
    """The bundle named by ``--bundle`` or by the log, checked against the log's."""
    if spec not in BUILTIN_BUNDLES and not user.is_user_spec(spec):
        raise UserError(f"the log is of bundle {spec!r}, not a built-in one: pass the "
                        "bundle it was served with, --bundle path/to/bundle.py (or "
                        "model:...)")
    bundle = get_bundle(spec)
    if logged is not None and logged not in {bundle.name, spec}:
        raise UserError(f"the log is of bundle {logged!r}, not {bundle.name!r} "
                        f"(--bundle {spec}): check one bundle's log against its own "
                        "reference")
    return bundle


def _reference(bundle: Bundle, args: argparse.Namespace) -> Reference:
    """--reference-inputs FILE.npy, --reference examples|FILE.json, or the shipped one."""
    try:
        if args.reference_inputs is not None:
            batch = _load_npy(args.reference_inputs, bundle)
            return drift.build_reference(bundle, [batch], f"{args.reference_inputs} "
                                                          f"({len(batch)} examples)")
        if args.reference == EXAMPLES:
            examples = bundle.example_requests()
            print(f"warning: the reference is the bundle's {len(examples)} example requests, "
                  "not its training data: few examples make a coarse reference. Pass "
                  "--reference-inputs TRAINING.npy for a real one", file=sys.stderr)
            return drift.build_reference(bundle, examples, f"the bundle's {len(examples)} "
                                                           "example requests")
        if args.reference is not None:
            return drift.load_reference(Path(args.reference))
        path = drift.shipped_reference_path(bundle.name)
        if bundle.name not in BUILTIN_BUNDLES or not path.is_file():
            raise UserError(
                f"bundle {bundle.name} ships no drift reference: pass --reference-inputs "
                f"FILE.npy (training inputs, shape (N, {', '.join(map(str, bundle.input_shape))}"
                f")), --reference FILE.json (from `deploybench drift --write-reference`), or "
                f"--reference {EXAMPLES} (its example requests: coarse)")
        return drift.load_reference(path)
    except DriftError as exc:
        raise UserError(str(exc)) from exc


def _load_npy(path: Path, bundle: Bundle) -> np.ndarray:
    try:
        array: np.ndarray = np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as a .npy array ({exc}). Save training "
                        "inputs with numpy.save(path, array)") from exc
    shape = tuple(bundle.input_shape)
    if array.ndim == len(shape):  # one example
        array = array[None]
    if tuple(array.shape[1:]) != shape or len(array) < 2:
        raise UserError(f"{path} holds an array of shape {array.shape}; the reference needs "
                        f"at least 2 examples of bundle {bundle.name}'s input shape: "
                        f"(N, {', '.join(map(str, shape))})")
    return array.astype(np.float32, copy=False)


def _write_reference(args: argparse.Namespace) -> int:
    spec = args.write_reference
    bundle = get_bundle(spec)
    if args.reference_inputs is not None:
        batch = _load_npy(args.reference_inputs, bundle)
        source, batches = f"{args.reference_inputs.name} ({len(batch)} examples)", [batch]
    elif (generator := drift.optional_member(bundle, "drift_reference_inputs")) is not None:
        source, batches = generator()
    else:
        raise UserError(f"bundle {bundle.name} has no drift_reference_inputs(): pass "
                        "--reference-inputs FILE.npy (its training inputs)")
    if args.out is None and spec not in BUILTIN_BUNDLES:
        raise UserError("--out FILE.json: where to write your bundle's reference (then "
                        "`deploybench drift LOG_DIR --reference FILE.json`)")
    out = args.out or drift.shipped_reference_path(spec)
    try:
        reference = drift.build_reference(bundle, batches, source)
    except DriftError as exc:
        raise UserError(str(exc)) from exc
    text = drift.reference_text(reference)
    atomic_write_text(out, text)
    print(f"wrote {out}: {len(reference.features)} features of {bundle.name} from "
          f"{source} ({len(text) / 1024:.0f} KiB)")
    return 0


def _document(args: argparse.Namespace, bundle: Bundle, reference: Reference, rows: int,
              distinct: int, results: list[drift.FeatureDrift],
              warnings: list[str]) -> dict[str, Any]:
    return {
        "log_dir": str(args.log_dir), "bundle": bundle.name,
        "reference": {"source": reference.source, "examples": reference.examples},
        "logged_examples": rows, "distinct_examples": distinct,
        "trustworthy": distinct >= drift.MIN_EXAMPLES,
        "psi_threshold": args.psi_threshold,
        "moved": [r.name for r in results if r.moved],
        "features": [{"name": r.name, "psi": r.psi, "ks": r.ks, "p_value": r.p_value,
                      "logged_mean": r.logged_mean, "reference_mean": r.reference_mean,
                      "verdict": r.verdict} for r in results],
        "warnings": warnings,
    }


def _print_table(args: argparse.Namespace, bundle: Bundle, reference: Reference, rows: int,
                 distinct: int, results: list[drift.FeatureDrift]) -> None:
    print(f"drift of {args.log_dir}: {rows} logged examples ({distinct} distinct) of "
          f"{bundle.name}, against {reference.source}")
    shown = results[: args.top] if args.top else results
    width = max([len("feature"), *(len(r.name) for r in shown)])
    print(f"{'feature':<{width}} {'PSI':>7} {'KS':>6} {'p-value':>8} {'logged mean':>11} "
          f"{'ref. mean':>10}  verdict")
    for r in shown:
        print(f"{r.name:<{width}} {r.psi:>7.3f} {r.ks:>6.3f} {r.p_value:>8.2g} "
              f"{r.logged_mean:>11.4g} {r.reference_mean:>10.4g}  {r.verdict}")
    if len(shown) < len(results):
        print(f"... {len(results) - len(shown)} more (--top 0 shows all)")
    moved = [r.name for r in results if r.moved]
    moderate = sum(r.verdict == "moderate" for r in results)
    print(f"{len(moved)} of {len(results)} features moved (PSI >= {args.psi_threshold:g})"
          + (f": {', '.join(moved)}" if moved else "")
          + (f"; {moderate} moderate (PSI {drift.STABLE:g} to {args.psi_threshold:g})"
             if moderate else ""))
