"""The main job as a user runs it, on the smoke scenario: real servers, real Locust."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from reports.breakdown import breakdown
from reports.schema import SCHEMA_VERSION, RunDoc, load_run, read_samples
from tests.integration.processes import alive, descendants
from tests.unit.test_run_types import problems

pytestmark = pytest.mark.integration

#: Every built-in deployment, in report order.
EVERY = ["inprocess", "flask", "fastapi", "grpc", "lambda"]


def test_run_every_target_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", ",".join(EVERY),
         "--bundle", "digits", "--scenario", "smoke", "--out", str(out), "--max-batch", "32"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert run["status"] == "complete"
    # Every block as written (not upgraded: this deploybench's version) is of its type.
    written = json.loads((out / "run.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    assert problems(written, RunDoc) == []
    assert [t["describe"].get("max_batch") for t in run["targets"][1:]] == [32, 32, 32, 32]
    assert [t["name"] for t in run["targets"]] == EVERY
    for target in run["targets"]:
        assert target["status"] == "ok", target["error"]
        assert target["parity"] is not None
        assert target["parity"]["ok"]
        assert [s["concurrency"] for s in target["stages"]] == [1, 4]
        for stage in target["stages"]:
            assert stage["errors"] == 0
            assert stage["rps"] > 0
    samples = read_samples(out)
    assert set(samples["target"]) == set(EVERY)
    # The breakdown splits each median into slices that add up to it (within 5%: medians
    # do not add exactly), none of them work that the measured requests did not do.
    rows = breakdown(run)
    assert [r.name for r in rows] == EVERY
    for row in rows:
        assert row.overrun_ms <= 0.05 * row.total_low_ms, row
        assert row.low_sum_ms() == pytest.approx(row.total_low_ms, rel=0.05), row
        if row.total_common_ms is not None:
            assert sum(row.parts.values()) == pytest.approx(row.total_common_ms, rel=0.05)
    for row in rows[1:]:  # served: the model, the wire format's steps, the rest
        assert row.parts["model"] > 0
        assert row.parts["encoding"] > 0
        assert row.parts["transport"] > 0
    md = (out / "report.md").read_text()
    assert "invocations" in md  # the serverless table
    for name in EVERY:
        assert f"**{name}**: peak" in md
    assert (out / "report.html").stat().st_size > 20_000  # charts embedded
    assert "flask" in done.stdout  # the console table
    # Nothing left running: the servers' PIDs are gone.
    for target in run["targets"][1:]:
        pid = target["describe"]["pid"]
        assert pid
        assert not (psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie")


@pytest.mark.parametrize(("how", "target", "extra", "running"), [
    ("SIGTERM", "flask", [], ["harness.loadgen.driver", "targets.flask.server"]),
    ("SIGKILL", "flask", [], ["harness.loadgen.driver", "targets.flask.server"]),
    # The fastapi server's forked uvicorn workers follow their supervisor.
    ("SIGKILL", "fastapi", [], ["harness.loadgen.driver", "targets.fastapi.server"]),
    # Lambda's execution environments and two Locust worker processes too.
    ("SIGINT", "lambda", ["--loadgen-workers", "2"],
     ["harness.loadgen.swarm.worker", "targets.awslambda.server", "awslambdaric"]),
    # A second Ctrl-C exits at once, and still leaves nothing behind.
    ("SIGINT twice", "grpc", [], ["harness.loadgen.driver", "targets.grpc.server"]),
    # The in-process driver (handler threads, no Locust) stops on the SIGTERM it gets.
    ("SIGTERM", "inprocess", [], ["harness.loadgen.driver"]),
])
def test_stopping_the_run_leaves_no_process(tmp_path: Path, how: str, target: str,
                                            extra: list[str], running: list[str]) -> None:
    out = tmp_path / "run"
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--targets", target, "--bundle",
             "digits", "--scenario", "quick", "--out", str(out), *extra],
            stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        # Wait until the server and the load generator all run under the orchestrator.
        seen: dict[int, psutil.Process] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for p in descendants(proc.pid):
                seen[p.pid] = p
            cmdlines = " ".join(" ".join(p.cmdline()) for p in alive(list(seen.values())))
            if all(marker in cmdlines for marker in running):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"never saw all of {running} running")
        time.sleep(1.0)  # load running
        for p in descendants(proc.pid):
            seen[p.pid] = p  # gunicorn workers, Lambda environments, Locust workers too
        if how == "SIGINT twice":
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)  # while the first is stopping things
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)  # at once, not after an orderly stop
        else:
            proc.send_signal(getattr(signal, how))
            proc.wait(timeout=60)
        stderr = err_path.read_text()
        deadline = time.monotonic() + 30
        while alive(list(seen.values())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(list(seen.values())), [p.cmdline() for p in alive(list(seen.values()))]
        if how in ("SIGTERM", "SIGINT"):
            signum = getattr(signal, how)
            assert proc.returncode == 128 + signum, stderr
            assert f"interrupted ({how})" in stderr
            run = load_run(out)
            assert run["status"] == "partial"
            assert run.get("stopped_by", "").startswith(f"it was interrupted ({how})")
            assert not (out / ".work" / target).exists()
        elif how == "SIGINT twice":
            assert proc.returncode == 128 + signal.SIGINT, stderr
            # No time to write: the run stays recognisably unfinished.
            assert load_run(out)["status"] in ("running", "partial")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
