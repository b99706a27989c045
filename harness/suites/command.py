"""``deploybench suite SUITE``: every cell of a suite file as an ordinary run, resumable,
then the index report and the history entry."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_suite_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    suite = sub.add_parser(
        "suite", help="run a benchmark suite: bundles x scenarios x a matrix of run options, "
                      "one run per cell, resumable; writes an index report and a history entry",
        description="Each cell of the suite file (a bundle, a scenario and one combination of "
                    "its matrix of run options) is an ordinary `deploybench run` in "
                    "OUT/cells/CELL. The whole file is checked before any cell starts. "
                    "Re-running with the same --out skips the cells already complete and "
                    "re-runs failed or partial ones. See docs/suites.md.")
    suite.add_argument("suite", help="a suite file (YAML) or a built-in suite's name "
                                     "(standard)")
    suite.add_argument("--out", type=Path, default=None,
                       help="the suite folder (default results/suites/NAME-TIMESTAMP); give "
                            "an existing one to resume it")
    suite.add_argument("--history", type=Path, default=None, metavar="DIR",
                       help="the history folder to which the suite adds its entry at the end "
                            "(default results/history/NAME)")
    suite.add_argument("--no-history", action="store_true",
                       help="add no history entry")
    suite.add_argument("--check", action="store_true",
                       help="check the suite file and list its cells with their estimated "
                            "time; run nothing")
    suite.set_defaults(func=cmd_suite)


def cmd_suite(args: argparse.Namespace) -> int:
    raise NotImplementedError("deploybench suite: being built (issue 23)")
