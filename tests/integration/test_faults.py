"""Faults during a run: a target killed mid-stage, the load generator killed mid-stage.

Either way the run goes on to the other targets, the failed one is reported with what it
measured before (the stage the target died in records its failures and the time of
death), run.json and the report are written, and nothing the run started is left.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from reports.schema import load_run
from tests.integration.processes import alive, descendants

pytestmark = pytest.mark.integration


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.NoSuchProcess:
        return ""


def _run_and_kill(tmp_path: Path, when: Callable[[list[psutil.Process], Path], bool],
                  victim: str, extra: tuple[str, ...] = ()
                  ) -> tuple[subprocess.CompletedProcess[str], set[int], int]:
    """`run --targets flask,grpc`; once ``when`` says so, SIGKILL flask's process whose
    command line has ``victim``. Returns the run, every PID it started, the victim's."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--targets", "flask,grpc", "--bundle",
         "digits", "--scenario", "smoke", "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, psutil.Process] = {}
    killed = 0
    try:
        deadline = time.monotonic() + 180
        while not killed and time.monotonic() < deadline and proc.poll() is None:
            tree = descendants(proc.pid)
            seen.update((p.pid, p) for p in tree)
            if when(tree, out):
                matching = [p for p in tree if victim in _cmdline(p) and "flask" in _cmdline(p)]
                pids = {p.pid for p in matching}
                # The main process, not one of its workers (a supervisor restarts those).
                target = next((p for p in matching if p.ppid() not in pids), None)
                if target is not None:
                    # The process and its workers, as a crash or the OOM killer takes a
                    # server (its supervisor alone dying leaves a worker serving a while).
                    family = [target, *descendants(target.pid)]
                    seen.update((p.pid, p) for p in family)
                    for member in family:
                        member.send_signal(signal.SIGKILL)
                    killed = target.pid
            time.sleep(0.05)
        assert killed, "never found the process to kill"
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    deadline = time.monotonic() + 30
    while alive(list(seen.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(list(seen.values())), [_cmdline(p) for p in alive(list(seen.values()))]
    return done, set(seen), killed


def _measuring() -> Callable[[list[psutil.Process], Path], bool]:
    """True once flask's load generator runs, its users have been sending (flask's
    server has spent 0.3 s of CPU since: with load-generator workers, taking the plan
    can take a while on a busy machine) and the stage has gone on a moment."""
    seen: list[float] = []

    def flask_cpu_s(tree: list[psutil.Process]) -> float:
        total = 0.0
        for p in tree:
            if "targets.flask.server" in _cmdline(p):
                with contextlib.suppress(psutil.Error):
                    times = p.cpu_times()
                    total += times.user + times.system
        return total

    def when(tree: list[psutil.Process], out: Path) -> bool:
        if not any("harness.loadgen.driver" in _cmdline(p) for p in tree):
            return False
        if not seen:
            seen.append(time.monotonic())
            seen.append(flask_cpu_s(tree))
        return time.monotonic() - seen[0] > 1.5 and flask_cpu_s(tree) - seen[1] > 0.3

    return when


@pytest.mark.parametrize("extra", [(), ("--loadgen-workers", "2")], ids=["one", "workers"])
def test_a_target_killed_mid_stage_is_reported_and_the_run_goes_on(
        tmp_path: Path, extra: tuple[str, ...]) -> None:
    done, _, pid = _run_and_kill(tmp_path, _measuring(), "targets.flask.server", extra)
    assert done.returncode == 1, done.stderr[-3000:]  # a target failed
    run = load_run(tmp_path / "run")
    assert run["status"] == "complete"
    flask, grpc = run["targets"]
    assert flask["status"] == "failed"
    assert "died" in (flask["error"] or "")
    assert f"PID {pid} was killed by SIGKILL" in (flask["error"] or "")
    last = flask["stages"][-1]  # the stage it died in, kept with its failures
    # Found during the stage: by the end of the window in which it died, after the stage's
    # warm-up began (smoke's is at most 10 s).
    assert last["window_start"] - 15 <= last["target_died_at"] <= last["window_end"]
    assert last["errors"] > 0
    assert not last["valid"]
    assert any("the target died" in r for r in last["reasons"])
    assert grpc["status"] == "ok", grpc["error"]  # measured all the same
    assert [s["errors"] for s in grpc["stages"]] == [0, 0]
    md = (tmp_path / "run" / "report.md").read_text()
    assert "flask** failed" in md
    assert "the target died" in md


def _first_stage_done(tree: list[psutil.Process], out: Path) -> bool:
    return (out / ".work" / "flask" / "partial.json").exists()


def test_a_load_generator_killed_mid_run_is_reported_with_what_it_measured(
        tmp_path: Path) -> None:
    done, _, _ = _run_and_kill(tmp_path, _first_stage_done, "harness.loadgen.driver")
    assert done.returncode == 1, done.stderr[-3000:]
    run = load_run(tmp_path / "run")
    flask, grpc = run["targets"]
    assert flask["status"] == "failed"
    assert "was killed by SIGKILL" in (flask["error"] or "")
    assert "the 1 stage(s) it had finished are kept" in (flask["error"] or "")
    assert len(flask["stages"]) == 1  # the stage it finished before it died
    assert flask["stages"][0]["errors"] == 0
    assert grpc["status"] == "ok", grpc["error"]
