"""``run --metrics``, ``--log-predictions RATE`` and ``--monitoring MODES``: which
monitoring modes a run measures (:class:`targets.monitoring.Monitoring`), checked, and
what a logging result's prediction log holds once its target stopped.

* ``--metrics`` / ``--log-predictions RATE`` alone: one mode, every result in it, names
  unchanged (``flask`` with metrics on).
* ``--monitoring off,metrics,metrics+log`` (or, without it, the scenario's ``monitoring``
  list): each target measured once per mode, results ``flask``, ``flask+metrics``,
  ``flask+metrics+log`` (harness.encodings). A log mode logs at ``--log-predictions``'s
  rate, else 1.0. With the modes, ``--metrics`` is accepted only when every mode has
  metrics (it would otherwise contradict the modes without), and ``--log-predictions``
  only when some mode logs (it sets their rate).
* an ``--endpoint`` is not ours to instrument: measured once, monitoring off, with a note.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from reports.schema import PredictionLogBlock, TargetResult
from targets import predlog, registry
from targets.monitoring import MODES, Monitoring, check_modes

if TYPE_CHECKING:
    from scenarios.catalogue import Scenario


def parse_log_rate(text: str) -> float:
    """``--log-predictions``: the fraction of requests logged, 0 < RATE <= 1."""
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not 0.0 < rate <= 1.0:
        raise argparse.ArgumentTypeError(
            f"bad --log-predictions {text!r}: give the fraction of requests to log, more "
            "than 0 and at most 1 (e.g. 1 for every request, 0.1 for one in ten)")
    return rate


def parse_modes(text: str) -> tuple[str, ...]:
    """``--monitoring``: a comma list of modes (targets.monitoring.check_modes)."""
    names = [m for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"no monitoring mode in --monitoring {text!r}; choose from {', '.join(MODES)}, "
            "e.g. --monitoring off,metrics,metrics+log")
    try:
        return check_modes(names, "--monitoring")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve(args: argparse.Namespace, scenario: Scenario, endpoints: dict[str, str],
            notes: list[str]) -> tuple[Monitoring, ...]:
    """The monitoring modes the run measures (one: every result in it, names unchanged;
    several: each target once per mode). Raises UserError for options that contradict
    each other or that no target can act on."""
    metrics = bool(getattr(args, "metrics", False))
    rate: float | None = getattr(args, "log_predictions", None)
    names: tuple[str, ...] = tuple(getattr(args, "monitoring", None) or ())
    source = "--monitoring"
    if not names and scenario.monitoring:
        names, source = scenario.monitoring, f"scenario {scenario.name}'s monitoring"
        print(f"note: scenario {scenario.name}: each target measured with monitoring "
              f"{', '.join(names)} (its monitoring list); give --monitoring to choose",
              file=sys.stderr)
    if names:
        modes = tuple(Monitoring.parse_mode(n, rate if rate is not None else 1.0)
                      for n in names)
        if metrics and not all(m.metrics for m in modes):
            raise UserError(f"--metrics asks for metrics in every result, and {source} "
                            f"({', '.join(names)}) measures some without: leave --metrics "
                            "out (the modes say where metrics are on)")
        if rate is not None and not any(m.log_rate for m in modes):
            raise UserError(f"--log-predictions {rate:g} sets the rate of the modes that "
                            f"log, and {source} ({', '.join(names)}) has none: add log or "
                            "metrics+log, or leave --log-predictions out")
    else:
        modes = (Monitoring(metrics=metrics, log_rate=rate or 0.0),)
    if all(m.off for m in modes):
        return modes
    served = [t for t in args.targets if t not in endpoints]
    if not served:
        raise UserError(f"monitoring ({', '.join(m.mode for m in modes)}) is switched on in "
                        "deploybench's own targets, and every one of "
                        f"{', '.join(args.targets) or 'the targets'} is an --endpoint (not "
                        "ours to instrument). Add a built-in target to --targets")
    refused = [t for t in served if (d := registry.find(t)) is not None and not d.monitors]
    if refused:
        raise UserError(f"{', '.join(refused)} cannot expose metrics or log predictions "
                        "(docs/deployments.md says why), and monitoring "
                        f"({', '.join(m.mode for m in modes)}) is switched on: leave "
                        f"{', '.join(refused)} out of --targets, or measure it without "
                        "--metrics, --log-predictions and --monitoring")
    for name in (t for t in args.targets if t in endpoints):
        note = (f"monitoring: {name} is measured once, monitoring off (an --endpoint's "
                "server is not ours to instrument)")
        notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    return modes


def add_prediction_log(result: TargetResult, target: Any, out_dir: Path) -> None:
    """A logging result's ``prediction_log``, read once its target stopped: its folder
    (relative to the run folder when inside it), the rows logged, and an error when the
    log could not be read. Nothing for a target that did not log."""
    folder = getattr(target, "prediction_log_dir", None)
    if folder is not None:
        result["prediction_log"] = prediction_log(Path(folder), out_dir)


def prediction_log(folder: Path, out_dir: Path) -> PredictionLogBlock:
    """What the prediction log in ``folder`` holds (``add_prediction_log``)."""
    try:
        shown = str(folder.resolve().relative_to(out_dir.resolve()))
    except ValueError:
        shown = str(folder)
    try:
        rows: int | None = predlog.count_rows(folder) if folder.is_dir() else 0
        error = None
    except (sqlite3.Error, OSError) as exc:  # a damaged database: said, result kept
        rows, error = None, f"{type(exc).__name__}: {exc}"
    return {"dir": shown, "rows": rows, "error": error}
