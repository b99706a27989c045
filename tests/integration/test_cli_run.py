"""The main job as a user runs it, on the smoke scenario: real servers, real Locust."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from reports.schema import load_run, read_samples

pytestmark = pytest.mark.integration


def test_run_inprocess_and_flask_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "inprocess,flask",
         "--bundle", "digits", "--scenario", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert run["status"] == "complete"
    assert [t["name"] for t in run["targets"]] == ["inprocess", "flask"]
    for target in run["targets"]:
        assert target["status"] == "ok", target["error"]
        assert target["parity"] is not None
        assert target["parity"]["ok"]
        assert [s["concurrency"] for s in target["stages"]] == [1, 4]
        for stage in target["stages"]:
            assert stage["errors"] == 0
            assert stage["rps"] > 0
    samples = read_samples(out)
    assert set(samples["target"]) == {"inprocess", "flask"}
    md = (out / "report.md").read_text()
    assert "**flask**: peak" in md
    assert "**inprocess**: peak" in md
    assert (out / "report.html").stat().st_size > 20_000  # charts embedded
    assert "flask" in done.stdout  # the console table
    # Nothing left running: the server's PID is gone.
    pid = run["targets"][1]["describe"]["pid"]
    assert pid
    assert not (psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie")
