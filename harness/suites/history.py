"""A suite's history: the entry a suite folder adds to its history folder
(:func:`append_entry`), and ``deploybench history HDIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from reports.compare import parse_fail_on


def append_entry(suite_dir: Path, history_dir: Path) -> Path | None:
    """Add (or replace) ``suite_dir``'s entry in ``history_dir``: its complete cells'
    run.json copies and what keys them. Returns the entry's folder, or None when no cell
    is complete (nothing to keep)."""
    raise NotImplementedError("suite history: being built (issue 23)")


def add_history_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hist = sub.add_parser(
        "history", help="a suite's history: trend charts per deployment and metric, and the "
                        "regressions between its last two entries",
        description="Reads a history folder that `deploybench suite` adds to (one entry per "
                    "suite folder: the project version, each bundle's hash, the time) and "
                    "writes history.md and history.html with a trend chart per deployment "
                    "and metric. The last two entries are compared cell by cell with "
                    "`deploybench compare`'s statistics. See docs/suites.md.")
    hist.add_argument("history_dir", type=Path, help="a history folder (results/history/NAME)")
    hist.add_argument("--out", type=Path, default=None,
                      help="where history.md, history.html and charts/ go (default: the "
                           "history folder)")
    hist.add_argument("--fail-on", type=parse_fail_on, action="append", default=None,
                      metavar="SPEC",
                      help="exit 3 when the latest entry is worse than the one before beyond "
                           "SPEC, as `compare --fail-on` (e.g. p99:+10%%,rps:-5%%)")
    hist.set_defaults(func=cmd_history)


def cmd_history(args: argparse.Namespace) -> int:
    raise NotImplementedError("deploybench history: being built (issue 23)")
