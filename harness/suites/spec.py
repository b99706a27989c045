"""A suite file, loaded and checked whole (:func:`load_suite`): its bundles x scenarios x
matrix of run options expanded into cells (:class:`reports.suiteschema.CellRecord`), each
cell's arguments parsed by run's own parser and checked by run's own checks
(:func:`harness.run_command.preflight`) before anything starts.

The format is docs/suites.md's.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import io
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

import scenarios
from harness.errors import UserError
from harness.run_command import preflight
from harness.runparser import add_run_parser
from reports.suiteschema import CELLS_DIR, PENDING, CellRecord, SuiteError
from scenarios.catalogue import ScenarioError
from targets.bundles.protocol import BUILTIN_BUNDLES
from targets.bundles.user import is_file_spec
from targets.errors import TargetError

#: The built-in suites: scenarios/suites/NAME.yaml.
BUILTIN_DIR = Path(scenarios.__file__).parent / "suites"
TOP_KEYS = ("name", "description", "bundles", "targets", "scenarios", "options", "matrix")
MODEL_KEYS = ("model", "input_shape", "handler", "name")
#: Run options a suite chooses itself: the cell's folder, its bundle and its scenario.
FORBIDDEN = {"out": "the suite gives each cell its folder (DIR/cells/CELL)",
             "bundle": "list bundles under `bundles`", "model": "list bundles under `bundles`",
             "handler": "list bundles under `bundles`",
             "input-shape": "list bundles under `bundles`",
             "scenario": "list scenarios under `scenarios`"}
DEFAULT_SCENARIOS = ("quick",)
#: What a cell takes beyond its load, measured on the 2-core development machine with
#: digits and scenario smoke (its estimate: 5.6 s of load per result): inprocess alone
#: 22.2 s, flask alone 22.9 s, both in one run 27.9 s wall. So ~12 s a run (Python and
#: torch start-up, the bundle check, the report), ~5 s a result (starting, checking and
#: stopping a deployment, and stages that settle later than at once, which the
#: scenario's estimate assumes). The progress line rescales by the measured ratio anyway.
RUN_OVERHEAD_S = 12.0
RESULT_OVERHEAD_S = 5.0
#: Each cold start and redeploy a scenario measures per result: the standard suite's
#: digits-quick cell (3 cold starts and 1 redeploy of 5 deployments) took 410 s against
#: 287 s estimated without them, ~25 s a result more: ~5 s a cold start (a process from
#: nothing to its first answer) and ~10 s a redeploy.
COLD_START_S = 5.0
REDEPLOY_S = 10.0


@dataclass(frozen=True)
class Suite:
    """A checked suite file and its cells, in order."""

    name: str
    description: str
    file: Path
    suite_hash: str
    cells: list[CellRecord]
    #: Each cell's notes from run's checks (warnings a run would print), by cell id.
    notes: dict[str, str]

    @property
    def estimated_s(self) -> float:
        return sum(c["estimated_s"] for c in self.cells)


class _ArgumentError(Exception):
    pass


class _RaisingParser(argparse.ArgumentParser):
    """argparse, with its usage errors raised instead of printed and exited on."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(message)


def _cell_parser() -> argparse.ArgumentParser:
    holder: argparse.ArgumentParser = _RaisingParser(prog="deploybench")
    # The subparsers are of the holder's class: run's parser raises too.
    return add_run_parser(holder.add_subparsers(dest="command"))


def suite_file(ref: str) -> Path:
    """A suite file's path from what the user typed: a path, or a built-in suite's name."""
    path = Path(ref)
    if path.is_file():
        return path.resolve()
    builtin = BUILTIN_DIR / f"{ref}.yaml"
    if "/" not in ref and not ref.endswith((".yaml", ".yml")) and builtin.is_file():
        return builtin
    known = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml")))
    raise SuiteError(f"no suite file {ref} (and no built-in suite of that name: {known})")


def _option_table(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """run's options by their name without the leading ``--``."""
    table = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help" and not flag.startswith("--no-"):
                table[flag[2:]] = action
    return table


def _text(value: Any) -> str:
    """A value as a command line (and a cell id) writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _option_argv(key: str, action: argparse.Action, value: Any) -> list[str]:
    """The run arguments that give option ``key`` this suite value."""
    flag = f"--{key}"
    if action.nargs == 0:  # a flag: store_true or --x/--no-x
        if not isinstance(value, bool):
            raise ValueError(f"takes true or false, not {value!r}")
        if isinstance(action, argparse.BooleanOptionalAction):
            return [flag if value else f"--no-{key}"]
        return [flag] if value else []
    if value is None or value == [] or isinstance(value, dict):
        raise ValueError(f"needs a value (a string, a number or a list), not {value!r}")
    if isinstance(action, argparse._AppendAction) and isinstance(value, list):
        return [f"{flag}={_text(v)}" for v in value]
    return [f"{flag}={_text(value)}"]


class _Checker:
    """Builds the errors of one suite file: each names the file, then where."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.parser = _cell_parser()
        self.options = _option_table(self.parser)

    def fail(self, where: str, what: str) -> NoReturn:
        raise SuiteError(f"{self.file}: {where}: {what}")

    def key(self, where: str, raw: Any) -> str:
        """An option key of `options` or `matrix`, checked; its name with dashes."""
        if not isinstance(raw, str):
            self.fail(where, f"option names are strings, not {raw!r}")
        key = raw.replace("_", "-")
        if key in FORBIDDEN:
            self.fail(f"{where}.{raw}", f"not allowed in a suite: {FORBIDDEN[key]}")
        if key not in self.options:
            close = difflib.get_close_matches(key, list(self.options), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                ". See `deploybench run --help` for run's options"
            self.fail(f"{where}.{raw}", f"not an option of deploybench run{hint}")
        return key

    def argv(self, where: str, key: str, value: Any) -> list[str]:
        try:
            argv = _option_argv(key, self.options[key], value)
            self.parser.parse_args(argv)
        except (ValueError, _ArgumentError) as exc:
            self.fail(where, str(exc))
        return argv


def _named_bundle(check: _Checker, where: str, item: str) -> tuple[str, list[str]]:
    if item in BUILTIN_BUNDLES:
        return item, [f"--bundle={item}"]
    if not is_file_spec(item):
        check.fail(where, f"{item!r} is neither a built-in bundle "
                          f"({', '.join(sorted(BUILTIN_BUNDLES))}) nor a file (.py)")
    path = (check.file.parent / item).resolve()
    if not path.is_file():
        check.fail(where, f"no bundle file {path}")
    return path.stem, [f"--bundle={path}"]


def _model_bundle(check: _Checker, where: str, item: dict[str, Any]
                  ) -> tuple[str, list[str]]:
    unknown = [k for k in item if k not in MODEL_KEYS]
    if unknown:
        check.fail(f"{where}.{unknown[0]}", f"not a key of a saved-model bundle "
                                            f"({', '.join(MODEL_KEYS)})")
    if not isinstance(item.get("model"), str):
        check.fail(f"{where}.model", "a saved model's path is required")
    argv = []
    for key in ("model", "handler"):
        if item.get(key) is None:
            continue
        path = (check.file.parent / str(item[key])).resolve()
        if not path.is_file():
            check.fail(f"{where}.{key}", f"no such file {path}")
        argv.append(f"--{key}={path}")
    if item.get("input_shape") is not None:
        argv.append(f"--input-shape={_text(item['input_shape'])}")
    return str(item.get("name") or Path(item["model"]).stem), argv


def _bundles(check: _Checker, doc: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Each bundle's label and the run arguments that choose it."""
    raw = doc.get("bundles")
    if not isinstance(raw, list) or not raw:
        check.fail("bundles", "give a non-empty list of bundles (built-in names, bundle "
                              "files, or saved models)")
    out: list[tuple[str, list[str]]] = []
    for i, item in enumerate(raw, 1):
        where = f"bundles[{i}]"
        if isinstance(item, str):
            out.append(_named_bundle(check, where, item))
        elif isinstance(item, dict):
            out.append(_model_bundle(check, where, item))
        elif item is None:
            check.fail(where, "empty (YAML reads a bare null as no value: write the null "
                              "bundle as 'null', in quotes)")
        else:
            check.fail(where, f"a bundle is a name, a file or a saved model (model: PATH), "
                              f"not {item!r}")
    return out


def _scenarios(check: _Checker, doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Each scenario's label and what run's --scenario gets (a name, or an absolute path)."""
    raw = doc.get("scenarios", list(DEFAULT_SCENARIOS))
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        check.fail("scenarios", "give a non-empty list of scenario names or files")
    out = []
    for name in raw:
        if name.endswith((".yaml", ".yml")) or "/" in name:
            path = (check.file.parent / name).resolve()
            out.append((path.stem, str(path)))
        else:
            out.append((name, name))
    return out


def _fixed_options(check: _Checker, doc: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """``targets`` and ``options``: value and the key as written, by dashed key."""
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        check.fail("options", f"a mapping of run options to values, not {options!r}")
    fixed: dict[str, tuple[Any, str]] = {}
    if "targets" in doc:
        fixed["targets"] = (doc["targets"], "targets")
    for raw, value in options.items():
        key = check.key("options", raw)
        if key in fixed:
            check.fail(f"options.{raw}", f"given twice (as {fixed[key][1]!r} too)")
        check.argv(f"options.{raw}", key, value)
        fixed[key] = (value, raw)
    return fixed


def _matrix(check: _Checker, doc: dict[str, Any],
            fixed: dict[str, tuple[Any, str]]) -> list[tuple[str, str, list[Any]]]:
    """The matrix: (dashed key, key as written, values), in the file's order."""
    matrix = doc.get("matrix") or {}
    if not isinstance(matrix, dict):
        check.fail("matrix", f"a mapping of run options to lists of values, not {matrix!r}")
    out: list[tuple[str, str, list[Any]]] = []
    for raw, values in matrix.items():
        key = check.key("matrix", raw)
        if key in fixed:
            check.fail(f"matrix.{raw}", f"also given as {fixed[key][1]!r} (a fixed option): "
                                        "give it in one place")
        if key in [k for k, _, _ in out]:
            check.fail(f"matrix.{raw}", "given twice")
        if not isinstance(values, list) or not values:
            check.fail(f"matrix.{raw}", f"a matrix key takes a non-empty list of values, "
                                        f"not {values!r}")
        out.append((key, str(raw), values))
    return out


def cell_id(bundle: str, scenario: str, matrix: list[tuple[str, Any]]) -> str:
    """``BUNDLE-SCENARIO[-key=value...]`` (keys as run's options, ``target-cpus``), safe
    for a folder name."""
    text = "-".join([bundle, scenario, *(f"{k}={_text(v)}" for k, v in matrix)])
    return re.sub(r"[^A-Za-z0-9._,=+-]", "_", text)


def suite_hash(name: str, cells: list[CellRecord], base: Path | None = None) -> str:
    """sha256 of what the suite measures: its name and each cell's id and arguments (not
    the file's text: comments, key spelling and layout do not change it). Paths under
    ``base`` (the suite file's folder) count as relative to it: a checkout moved (a CI
    job's workspace) is the same suite, resumable and one history."""
    prefix = f"{base}/" if base is not None else None

    def relative(arg: str) -> str:
        flag, eq, value = arg.partition("=")
        if prefix and eq and value.startswith(prefix):
            return f"{flag}=./{value[len(prefix):]}"
        return arg

    normal = {"name": name, "cells": [[c["id"], [relative(a) for a in c["argv"]]]
                                      for c in cells]}
    return hashlib.sha256(json.dumps(normal, sort_keys=True).encode()).hexdigest()


def estimate_s(load_s: float, results: int, trials: int, cold_starts: int = 0,
               redeploys: int = 0) -> float:
    """What a cell should take: its load (the scenario's estimate x results) x trials, plus
    a start-up allowance and the scenario's cold starts and redeploys of each result."""
    per_result = RESULT_OVERHEAD_S + COLD_START_S * cold_starts + REDEPLOY_S * redeploys
    return round(load_s * trials + RUN_OVERHEAD_S + per_result * results, 1)


def _checked_cell(check: _Checker, cell_id_: str, argv: list[str]) -> tuple[float, list[str],
                                                                           str]:
    """Run's parser and run's own checks on one cell: its estimate, its targets and the
    notes the checks printed."""
    where = f"cell {cell_id_}"
    try:
        args = check.parser.parse_args(argv)
    except _ArgumentError as exc:
        check.fail(where, str(exc))
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            checks = preflight(args)
    except (UserError, ScenarioError, TargetError) as exc:
        check.fail(where, str(exc))
    scenario = checks.scenario
    return (estimate_s(checks.load_s, len(checks.result_names), args.trials,
                       scenario.cold_starts, scenario.redeploys),
            list(args.targets), captured.getvalue())


def load_suite(ref: str) -> Suite:
    """Load and check a whole suite file (SuiteError naming the file, the cell, the key)."""
    file = suite_file(ref)
    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"{file} cannot be read as YAML ({exc})") from None
    check = _Checker(file)
    if not isinstance(doc, dict):
        check.fail("the file", "a suite file is a YAML mapping (see docs/suites.md)")
    unknown = [k for k in doc if k not in TOP_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), TOP_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (keys: {', '.join(TOP_KEYS)})"
        check.fail(str(unknown[0]), f"not a key of a suite file{hint}")
    name = str(doc.get("name") or file.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        # It names folders: results/suites/NAME-..., results/history/NAME.
        check.fail("name", f"{name!r}: a suite's name is letters, digits, '.', '_' and "
                           "'-', starting with a letter or digit (it names its folders)")
    bundles, scens = _bundles(check, doc), _scenarios(check, doc)
    fixed = _fixed_options(check, doc)
    if "targets" in fixed:
        check.argv("targets", "targets", fixed["targets"][0])
    matrix = _matrix(check, doc, fixed)
    cells: list[CellRecord] = []
    notes: dict[str, str] = {}
    seen: set[str] = set()
    combos = list(itertools.product(*(values for _, _, values in matrix)))
    for (label, bundle_args), (scen_label, scen), combo in itertools.product(bundles, scens,
                                                                             combos):
        chosen = [(raw, value) for (_, raw, _), value in zip(matrix, combo, strict=True)]
        cid = cell_id(label, scen_label, [(key, value) for (key, _, _), value
                                          in zip(matrix, combo, strict=True)])
        if cid in seen:
            check.fail(f"cell {cid}", "two cells would share this id: give the bundles "
                                      "distinct names (or files), the matrix distinct values")
        seen.add(cid)
        argv = [*bundle_args, f"--scenario={scen}"]
        for key, (value, _) in fixed.items():
            argv += _option_argv(key, check.options[key], value)
        for (key, raw, _), value in zip(matrix, combo, strict=True):
            argv += check.argv(f"cell {cid}: matrix.{raw}", key, value)
        estimated, targets, said = _checked_cell(check, cid, argv)
        notes[cid] = said
        cells.append(CellRecord(
            id=cid, index=len(cells) + 1, bundle=label, bundle_args=bundle_args,
            scenario=scen_label, targets=targets, matrix=dict(chosen),
            options={**{raw: value for value, raw in fixed.values()}, **dict(chosen)},
            argv=argv, dir=f"{CELLS_DIR}/{cid}", status=PENDING, exit_code=None,
            wall_s=None, estimated_s=estimated, attempts=0))
    return Suite(name=name, description=str(doc.get("description") or ""), file=file,
                 suite_hash=suite_hash(name, cells, file.parent), cells=cells, notes=notes)
