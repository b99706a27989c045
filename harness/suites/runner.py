"""Running a checked suite (:class:`harness.suites.spec.Suite`) into its folder: every cell
an ordinary ``deploybench run`` in a child process, resumable from what is on disk.

A cell is complete when its run.json says so (status complete, every target ok): decided
from the files, never from the manifest alone, so a suite killed with SIGKILL resumes
right. Anything else in a cell's folder is an earlier attempt, moved to
``attempts/ID-N`` before the cell is run again: nothing measured is deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.results import atomic_write_text
from harness.run_command import EXIT_INVALID
from harness.suites.spec import Suite
from reports.schema import ResultFileError, load_run
from reports.suiteschema import (
    ATTEMPTS_DIR,
    CELLS_DIR,
    COMPLETE,
    FAILED,
    MANIFEST_FILE,
    PARTIAL,
    PENDING,
    RUNNING,
    SUITE_SCHEMA,
    CellRecord,
    MachineClass,
    SuiteError,
    SuiteManifest,
    load_manifest,
)
from targets.runtimes.process import child_env


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def cell_outcome(cell_dir: Path) -> tuple[str | None, str | None]:
    """A cell's status as its run folder tells it, and why when not complete; (None,
    None) when it holds no run.json."""
    if not (cell_dir / "run.json").exists():
        return None, None
    try:
        run = load_run(cell_dir)
    except (ResultFileError, OSError) as exc:
        return FAILED, f"its run.json cannot be read ({exc})"
    failed = [t for t in run["targets"] if t["status"] != "ok"]
    if run["status"] == COMPLETE and not failed:
        return COMPLETE, None
    why = "; ".join(f"{t['name']}: {t.get('error') or t['status']}" for t in failed)
    if run["status"] != COMPLETE:
        stopped = run.get("stopped_by") or f"run status {run['status']}"
        return PARTIAL, f"{stopped}{'; ' + why if why else ''}"
    return FAILED, why


def is_complete(cell_dir: Path) -> bool:
    return cell_outcome(cell_dir)[0] == COMPLETE


def move_aside(suite_dir: Path, cell_id: str) -> Path | None:
    """Move an incomplete cell's folder to attempts/ID-N (the next free N)."""
    cell_dir = suite_dir / CELLS_DIR / cell_id
    if not cell_dir.exists():
        return None
    attempts = suite_dir / ATTEMPTS_DIR
    attempts.mkdir(exist_ok=True)
    n = 1
    while (attempts / f"{cell_id}-{n}").exists():
        n += 1
    target = attempts / f"{cell_id}-{n}"
    cell_dir.rename(target)
    return target


def new_manifest(suite: Suite, machine: MachineClass, version: str,
                 git_commit: str | None) -> SuiteManifest:
    return SuiteManifest(
        suite_schema=SUITE_SCHEMA, name=suite.name, description=suite.description,
        file=str(suite.file), suite_hash=suite.suite_hash, status=RUNNING,
        started_at=now_iso(), finished_at=None, machine=machine, deploybench=version,
        git_commit=git_commit, cells=[CellRecord(**c) for c in suite.cells])


def open_suite_dir(out: Path, suite: Suite, fresh: Callable[[], SuiteManifest]
                   ) -> tuple[SuiteManifest, bool]:
    """The manifest to run with: a new one for a new (or empty) folder, else the folder's
    own, refused when it holds another suite; (manifest, resumed)."""
    if (out / MANIFEST_FILE).exists():
        old = load_manifest(out)
        if old["suite_hash"] != suite.suite_hash:
            raise SuiteError(
                f"{out} holds another suite (or this suite file changed since): its hash is "
                f"{old['suite_hash']}, {suite.file}'s is {suite.suite_hash}. Give a new "
                "--out to run this one")
        manifest = fresh()
        # Cells measured on two kinds of machine are not one suite's figures (the index
        # compares them, the history files them under one machine class).
        ran_on, here = old["machine"].get("label"), manifest["machine"].get("label")
        if ran_on != here:
            raise SuiteError(
                f"{out}'s cells ran on another machine ({ran_on}); this one is {here}. "
                "Give a new --out to run the suite here")
        manifest["started_at"] = old["started_at"]
        before = {c["id"]: c for c in old["cells"]}
        for cell in manifest["cells"]:
            prior = before.get(cell["id"])
            if prior is not None:
                for key in ("status", "exit_code", "wall_s", "attempts", "error"):
                    if key in prior:
                        cell[key] = prior[key]
        if "history_entry" in old:
            manifest["history_entry"] = old["history_entry"]
        return manifest, True
    if out.exists() and (not out.is_dir() or any(p.name != LOCK_FILE for p in out.iterdir())):
        raise SuiteError(f"{out} exists and is not a suite folder (no {MANIFEST_FILE}). Give "
                         "a new --out, or a suite folder to resume")
    return fresh(), False


#: Held (flock) by the suite running in a folder; the kernel drops it when that process
#: ends, however it ends.
LOCK_FILE = ".suite.lock"


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the suite folder's lock: a second suite in the same folder (a CI retry, a
    second terminal) would move the first one's running cell aside as an earlier attempt."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK_FILE).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise SuiteError(f"another deploybench suite (PID {holder}) is running in {out}: "
                             "wait for it, or give another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def write_manifest(out: Path, manifest: SuiteManifest) -> None:
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


@dataclass
class _Progress:
    """Estimated against actual time over the cells run in this invocation."""

    estimated_s: float = 0.0
    actual_s: float = 0.0
    interrupted: int | None = None
    cells_run: list[str] = field(default_factory=list)

    def ratio(self) -> float:
        return self.actual_s / self.estimated_s if self.estimated_s > 0 else 1.0


#: How a cell is run: ``deploybench run`` by this interpreter, then the cell's arguments
#: and ``--out``.
RUN_COMMAND = (sys.executable, "-m", "harness", "run")


def _run_cell(command: tuple[str, ...], cell_dir: Path, progress: _Progress) -> int:
    """One run in its own process group (a terminal's Ctrl-C reaches the suite only), its
    output the suite's own; a signal to the suite is forwarded to it once, and waited out
    while it writes its partial run.json. Its exit code."""
    # child_env: a suite killed outright (SIGKILL) takes its cell with it, by SIGTERM, so
    # the run still writes what it measured as partial (run_command.cmd_run). Its output
    # is not piped through the suite, which could die first.
    proc = subprocess.Popen([*command, "--out", str(cell_dir)], process_group=0,
                            env=child_env())
    try:
        return proc.wait()
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signum", signal.SIGINT))
        progress.interrupted = signum
        with contextlib.suppress(ProcessLookupError):  # it had ended on its own
            os.kill(proc.pid, signum)
        return proc.wait()


@dataclass
class SuiteRun:
    """One invocation of a suite into its folder."""

    suite: Suite
    out: Path
    manifest: SuiteManifest
    resume_command: str
    progress: _Progress = field(default_factory=_Progress)
    #: What runs a cell (tests give a stand-in for ``deploybench run``).
    run_command: tuple[str, ...] = RUN_COMMAND

    def run_cells(self) -> None:
        """Every cell not complete on disk, in order; stops starting cells on a signal."""
        cells = self.manifest["cells"]
        todo = []
        for cell in cells:
            if is_complete(self.out / cell["dir"]):
                cell["status"] = COMPLETE
            else:
                # The files decide: a cell the manifest calls complete whose run.json is
                # gone or incomplete is not counted complete if the suite stops first.
                if cell["status"] == COMPLETE:
                    cell["status"] = PENDING
                todo.append(cell)
        skipped = len(cells) - len(todo)
        self.manifest["status"] = RUNNING
        self.manifest["finished_at"] = None
        write_manifest(self.out, self.manifest)
        for k, cell in enumerate(todo):
            left = sum(c["estimated_s"] for c in todo[k:]) * self.progress.ratio()
            done = f" (skipped {skipped} complete)" if skipped else ""
            print(f"suite {self.suite.name}: cell {cell['index']} of {len(cells)}: "
                  f"{cell['id']}{done} - about {left / 60:.1f} min left",
                  file=sys.stderr, flush=True)
            self._run_one(cell)
            if self.progress.interrupted is not None:
                return

    def _run_one(self, cell: CellRecord) -> None:
        moved = move_aside(self.out, cell["id"])
        if moved is not None:
            print(f"note: an earlier attempt at {cell['id']} was moved to "
                  f"{moved.relative_to(self.out)}", file=sys.stderr)
        cell["attempts"] += 1
        write_manifest(self.out, self.manifest)
        cell_dir = self.out / cell["dir"]
        started = time.monotonic()
        code = _run_cell((*self.run_command, *cell["argv"]), cell_dir, self.progress)
        wall = time.monotonic() - started
        self.progress.estimated_s += cell["estimated_s"]
        self.progress.actual_s += wall
        self.progress.cells_run.append(cell["id"])
        status, why = cell_outcome(cell_dir)
        if self.progress.interrupted is not None and status != COMPLETE:
            status = PARTIAL
            why = why or "interrupted before it wrote run.json"
        elif status is None:
            status = FAILED
            why = f"exit code {code} and no run.json: its error is in the output above"
        elif status == COMPLETE and code == EXIT_INVALID:
            # Complete, as a resume would find it on disk: --strict's verdict on its
            # INVALID stages is said, and makes the suite's exit code (command._finish).
            why = f"exit code {code}: INVALID stages (--strict)"
        elif status == COMPLETE and code != 0:
            # The files decide, as on a resume (is_complete): every figure is in run.json;
            # what failed after it (its report) is said, not counted as a failed cell.
            why = (f"exit code {code} after its run.json was complete (see the output "
                   f"above; `deploybench report {cell_dir}` redraws the report)")
        cell["status"], cell["exit_code"], cell["wall_s"] = status, code, round(wall, 1)
        if why:
            cell["error"] = why
        else:
            cell.pop("error", None)
        write_manifest(self.out, self.manifest)
