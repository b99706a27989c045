"""``deploybench suite SUITE``: every cell of a suite file as an ordinary run, resumable,
then the index report and the history entry."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import signal
import sys
import time
from pathlib import Path

import harness
from harness.metadata import collect_cpu, collect_git
from harness.run_command import EXIT_INVALID
from harness.suites import history
from harness.suites.runner import (
    SuiteRun,
    locked,
    new_manifest,
    now_iso,
    open_suite_dir,
    write_manifest,
)
from harness.suites.spec import Suite, load_suite
from reports import suiteindex
from reports.suiteschema import COMPLETE, INCOMPLETE, INTERRUPTED, SuiteManifest, machine_class


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
    # One or the other: --no-history beside --history would silently drop the history.
    keep = suite.add_mutually_exclusive_group()
    keep.add_argument("--history", type=Path, default=None, metavar="DIR",
                      help="the history folder to which the suite adds its entry at the end "
                           "(default results/history/NAME)")
    keep.add_argument("--no-history", action="store_true",
                      help="add no history entry")
    suite.add_argument("--check", action="store_true",
                       help="check the suite file and list its cells with their estimated "
                            "time; run nothing")
    suite.set_defaults(func=cmd_suite)


def _check(suite: Suite) -> int:
    """--check: the cells and their estimates; nothing runs."""
    print(f"suite {suite.name} ({suite.file}): {len(suite.cells)} cells, hash "
          f"{suite.suite_hash[:12]}")
    for cell in suite.cells:
        print(f"  {cell['index']:>3}. {cell['id']:<48} ~{cell['estimated_s'] / 60:5.1f} min  "
              f"{' '.join(cell['argv'])}")
        for line in suite.notes[cell["id"]].splitlines():
            print(f"       {line}")
    print(f"total: ~{suite.estimated_s / 60:.1f} min (estimated: each scenario's load x "
          "results x trials, plus start-up, cold starts and redeploys)")
    return 0


def _resume_command(args: argparse.Namespace, out: Path) -> str:
    parts = ["deploybench", "suite", args.suite, "--out", str(out)]
    if args.no_history:
        parts.append("--no-history")
    elif args.history is not None:
        parts += ["--history", str(args.history)]
    return shlex.join(parts)


def _finish(run: SuiteRun, args: argparse.Namespace, started: float) -> int:
    """The manifest's final status, the index, the history entry; the exit code."""
    manifest, out = run.manifest, run.out
    cells = manifest["cells"]
    signum = run.progress.interrupted
    complete = [c for c in cells if c["status"] == COMPLETE]
    manifest["status"] = (INTERRUPTED if signum is not None else
                          COMPLETE if len(complete) == len(cells) else INCOMPLETE)
    manifest["finished_at"] = now_iso()
    write_manifest(out, manifest)
    # Whatever goes wrong in the index, the cells' runs stand: say so, and go on.
    try:
        md, html = suiteindex.render_suite_dir(out)
        print(f"wrote {md}, {html}", file=sys.stderr)
    except Exception as exc:
        print(f"warning: the suite's index report could not be written "
              f"({type(exc).__name__}: {exc}); every cell's own report is in "
              f"{out}/cells/CELL/report.md", file=sys.stderr)
    if signum is None and not args.no_history:
        _add_history(manifest, args, out)
    print(f"suite {manifest['name']}: {len(complete)} of {len(cells)} cells complete; "
          f"this invocation ran {len(run.progress.cells_run)} of them; wall time "
          f"{(time.monotonic() - started) / 60:.1f} min; wrote {out / 'suite.json'}",
          file=sys.stderr)
    if signum is not None:
        print(f"interrupted ({signal.Signals(signum).name}): what was measured is kept. "
              f"Resume with: {run.resume_command}", file=sys.stderr)
        return 128 + signum
    if len(complete) < len(cells):
        for cell in cells:
            if cell["status"] != COMPLETE:
                print(f"  {cell['status']}: {cell['id']}: {cell.get('error', '')}",
                      file=sys.stderr)
        print(f"{len(cells) - len(complete)} cell(s) not complete; re-run to retry them: "
              f"{run.resume_command}", file=sys.stderr)
        return 1
    strict = [c["id"] for c in cells if c["exit_code"] == EXIT_INVALID]
    if strict:  # every cell's last run: a skipped cell keeps its earlier run's code
        print(f"{len(strict)} cell(s) with INVALID stages (--strict): {', '.join(strict)}",
              file=sys.stderr)
        return EXIT_INVALID
    return 0


def _add_history(manifest: SuiteManifest, args: argparse.Namespace, out: Path) -> None:
    hdir = args.history or Path("results/history") / manifest["name"]
    # The suite's results stand without the history: a failing entry is a warning.
    try:
        entry = history.append_entry(out, hdir)
    except Exception as exc:
        print(f"warning: no history entry was added to {hdir} "
              f"({type(exc).__name__}: {exc})", file=sys.stderr)
        return
    if entry is None:
        print(f"note: no cell is complete: nothing added to the history {hdir}",
              file=sys.stderr)
        return
    manifest["history_entry"] = str(entry)
    write_manifest(out, manifest)
    print(f"wrote the history entry {entry}", file=sys.stderr)


def cmd_suite(args: argparse.Namespace) -> int:
    started = time.monotonic()
    suite = load_suite(args.suite)
    if args.check:
        return _check(suite)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or Path("results/suites") / f"{suite.name}-{stamp}").resolve()

    machine, commit = machine_class(dict(collect_cpu())), collect_git().get("git_commit")

    def fresh() -> SuiteManifest:
        return new_manifest(suite, machine, harness.__version__, commit)

    open_suite_dir(out, suite, fresh)  # its refusals, before the folder is touched
    with locked(out):  # then again under the lock: what another suite left is read whole
        manifest, resumed = open_suite_dir(out, suite, fresh)
        print(f"suite {suite.name}: {len(suite.cells)} cells, ~{suite.estimated_s / 60:.0f} "
              f"min estimated; {'resuming' if resumed else 'results in'} {out}",
              file=sys.stderr)
        run = SuiteRun(suite=suite, out=out, manifest=manifest,
                       resume_command=_resume_command(args, out))
        try:
            run.run_cells()
        except KeyboardInterrupt as exc:  # between cells: stop there
            run.progress.interrupted = int(getattr(exc, "signum", signal.SIGINT))
        return _finish(run, args, started)
