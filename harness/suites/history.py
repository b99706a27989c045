"""A suite's history: the entry a suite folder adds to its history folder
(:func:`append_entry`), and ``deploybench history HDIR``."""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import os
import shutil
import sys
from pathlib import Path

from harness.commands import EXIT_REGRESSION
from reports import history, historyreport
from reports.compare import change_text, metric_value, parse_fail_on
from reports.schema import RUN_FILE, ResultFileError, RunDoc, parse_run
from reports.suiteschema import (
    COMPLETE,
    ENTRY_FILE,
    HISTORY_SCHEMA,
    RUNS_DIR,
    CellRecord,
    HistoryCell,
    HistoryEntry,
    SuiteError,
    SuiteManifest,
    load_entry,
    load_manifest,
)
from targets.files import atomic_write_json


def _utc(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _cell_end(cell: CellRecord, run: RunDoc, file: Path) -> dt.datetime:
    """When a cell's run ended: its start plus its wall time, else its run.json's mtime."""
    started = run["metadata"].get("started_at")
    if started and cell["wall_s"] is not None:
        try:
            return _utc(started) + dt.timedelta(seconds=cell["wall_s"])
        except ValueError:
            pass
    return dt.datetime.fromtimestamp(file.stat().st_mtime, dt.UTC)


def _entry_time(manifest: SuiteManifest, ends: list[dt.datetime]) -> dt.datetime:
    if manifest["finished_at"]:
        try:
            return _utc(manifest["finished_at"])
        except ValueError:
            pass
    return max(ends)


def _existing(history_dir: Path, source: str, started_at: str) -> Path | None:
    """The entry an earlier append from the same suite run wrote, if any: the same folder
    and the same start (a folder reused for a new suite run starts again)."""
    if not history_dir.is_dir():
        return None
    for d in sorted(history_dir.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and (d / ENTRY_FILE).exists():
            try:
                entry = load_entry(d)
            except SuiteError:
                continue  # a damaged entry is another's; `history` names it
            if entry["source"] == source and entry.get("source_started_at") == started_at:
                return d
    return None


def _entry_id(history_dir: Path, when: dt.datetime, version: str,
              replacing: Path | None) -> str:
    base = f"{when:%Y%m%dT%H%M%SZ}-{version}"
    entry_id, n = base, 1
    while (history_dir / entry_id).exists() and (history_dir / entry_id) != replacing:
        n += 1
        entry_id = f"{base}-{n}"
    return entry_id


def append_entry(suite_dir: Path, history_dir: Path) -> Path | None:
    """Add (or replace) ``suite_dir``'s entry in ``history_dir``: its complete cells'
    run.json copies and what keys them. Returns the entry's folder, or None when no cell
    is complete (nothing to keep).

    Written whole in a temporary folder, then renamed: a reader sees the old entry or the
    new one. The entry of the same suite run (the same folder and ``started_at``: a resumed
    suite) is replaced; a new suite run in a reused folder adds an entry."""
    suite_dir = suite_dir.resolve()
    manifest = load_manifest(suite_dir)
    runs: list[tuple[CellRecord, RunDoc, bytes, Path]] = []
    for cell in manifest["cells"]:
        file = suite_dir / cell["dir"] / RUN_FILE
        if cell["status"] != COMPLETE:
            continue
        try:
            raw = file.read_bytes()
            run = parse_run(raw, str(file))
        except (ResultFileError, OSError) as exc:
            raise SuiteError(f"the complete cell {cell['id']} has no readable run.json "
                             f"({exc}); re-run the suite with --out {suite_dir} to "
                             "measure it again") from None
        runs.append((cell, run, raw, file))
    if not runs:
        return None
    when = _entry_time(manifest, [_cell_end(c, r, f) for c, r, _, f in runs])
    dirty = [r["metadata"].get("git_dirty") for _, r, _, _ in runs]
    # The code that measured the cells, from the runs (a suite resumed after a pull ran
    # its cells on two commits; the manifest holds only the last invocation's).
    made_by = {(r["metadata"].get("deploybench"), r["metadata"].get("git_commit"))
               for _, r, _, _ in runs}
    version, commit = next(iter(made_by)) if len(made_by) == 1 else (None, None)
    if len(made_by) > 1:
        print(f"note: {suite_dir}'s cells ran on {len(made_by)} versions or commits "
              f"({', '.join(sorted(str(c)[:12] for _, c in made_by))}): its history entry "
              "records none, and `history` compares it as of an unknown commit",
              file=sys.stderr)
    cells: list[HistoryCell] = [{
        "id": c["id"], "bundle": c["bundle"], "bundle_sha256": r["bundle"].get("sha256"),
        "scenario": c["scenario"], "matrix": c["matrix"], "targets": c["targets"],
        "run": f"{RUNS_DIR}/{c['id']}.json.gz"} for c, r, _, _ in runs]
    kept = {c["id"] for c in cells}
    entry: HistoryEntry = {
        "history_schema": HISTORY_SCHEMA, "suite": manifest["name"],
        "suite_hash": manifest["suite_hash"], "machine": manifest["machine"],
        "deploybench": version or manifest["deploybench"], "git_commit": commit,
        "git_dirty": True if any(dirty) else (False if all(d is False for d in dirty)
                                              else None),
        "time": when.isoformat(timespec="seconds"), "source": str(suite_dir),
        "source_started_at": manifest["started_at"],
        "cells": cells, "left_out": [c["id"] for c in manifest["cells"] if c["id"] not in kept],
    }
    history_dir.mkdir(parents=True, exist_ok=True)
    old = _existing(history_dir, str(suite_dir), manifest["started_at"])
    entry_id = _entry_id(history_dir, when, manifest["deploybench"], old)
    tmp = history_dir / f".new-{entry_id}-{os.getpid()}"
    aside: Path | None = None
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / RUNS_DIR).mkdir(parents=True)
    try:
        for (_, _, raw, _), kept_cell in zip(runs, cells, strict=True):
            # mtime=0: the same run.json gives the same bytes (a CI cache sees no change).
            (tmp / kept_cell["run"]).write_bytes(gzip.compress(raw, mtime=0))
        atomic_write_json(tmp / ENTRY_FILE, entry)
        aside = None
        if old is not None:
            aside = history_dir / f".old-{old.name}-{os.getpid()}"
            old.rename(aside)
        tmp.rename(history_dir / entry_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and aside is not None and aside.exists() and not old.exists():
            aside.rename(old)  # the old entry back, not left hidden as .old-*
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return history_dir / entry_id


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
                           "SPEC, as `compare --fail-on` (e.g. p99:+10%%,rps:-5%%), or a cell "
                           "complete in the one before is not complete in the latest")
    hist.set_defaults(func=cmd_history)


def cmd_history(args: argparse.Namespace) -> int:
    """Write the history's report; with --fail-on, exit 3 when the latest entry is worse
    than the one before beyond a check."""
    hist = history.load_history(args.history_dir)
    checks = [check for group in args.fail_on or [] for check in group]
    trend = history.trend(hist)
    latest = history.latest_changes(hist)
    out = args.out or args.history_dir
    written = historyreport.write(hist, trend, latest, out)
    rec = hist.latest.record
    print(f"history of {rec['suite']} on {rec['machine']['label']}: "
          f"{len(hist.entries)} entries, latest {hist.latest.id}")
    for entry_id, why in hist.left_out:
        print(f"  left out {entry_id}: {why}")
    for note in hist.notes:
        print(f"  note: {note}")
    failures: list[str] = []
    if latest is None:
        print("one entry: nothing to compare yet"
              + (f" (--fail-on {', '.join(c.text for c in checks)}: nothing compared)"
                 if checks else ""))
    else:
        print(f"{latest.latest.id} against {latest.previous.id}:")
        for note in latest.notes:
            print(f"  note: {note}")
        for cell in latest.cells:
            print(f"  {cell.cell}: {historyreport.verdict_counts(cell.verdicts())}")
            for note in cell.notes:
                print(f"    note: {note}")
            for c in cell.worse:
                print(f"    worse: {c.target} at {c.load} {c.metric} "
                      f"{metric_value(c.metric, c.a.value)} -> "
                      f"{metric_value(c.metric, c.b.value)} "
                      f"({change_text(c)}, {c.verdict})")
            for line in cell.comparison.failed_in_b:
                print(f"    {line}")
        failures = history.gate(latest, checks)
    print(f"wrote {written.markdown}, {written.html} and {len(written.charts)} chart(s) in "
          f"{written.markdown.parent / historyreport.CHART_DIR}")
    if failures:
        print(f"FAIL ({', '.join(c.text for c in checks)}):")
        for line in failures:
            print(f"  {line}")
        return EXIT_REGRESSION
    if checks and latest is not None:
        print(f"PASS ({', '.join(c.text for c in checks)}): no significant change beyond "
              "the thresholds in any cell")
    return 0
