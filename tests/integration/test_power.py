"""`run --lambda-memory-mb 512,1769` as a user runs it: the Lambda emulator started once
per memory size, each its own result, and the report's "Lambda power tuning" section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reports.schema import deployment, load_run

pytestmark = pytest.mark.integration

#: Smoke-sized: one cold start and a second or two of 1 user per size, in windows of
#: 0.5 s that stretch (up to 5 s) until each holds the 662 requests p99 needs (one
#: window kept). This checks the plumbing, not the figures.
TINY = {"description": "power, smoke-sized", "cold_starts": 1, "concurrency": [1],
        "warmup_s": 0.3, "window_s": 0.5, "window_max_s": 5.0, "stability_windows": 1,
        "max_windows": 2, "cooldown_s": 0.1, "drain_timeout_s": 10}


def test_lambda_measured_once_per_memory_size(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny-power.yaml"
    scenario.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "power"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "lambda",
         "--lambda-memory-mb", "512,1769", "--bundle", "digits", "--scenario",
         str(scenario), "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert [t["name"] for t in run["targets"]] == ["lambda-512", "lambda-1769"]
    for target, mb in zip(run["targets"], (512, 1769), strict=True):
        assert target["status"] == "ok", target["error"]
        assert deployment(target) == "lambda"
        assert target["describe"]["memory_mb"] == mb
        assert target["parity"]["ok"]
        assert target["cold_starts"]["samples"]
        platform = target["stages"][0]["platform"]
        assert platform["memory_mb"] == mb  # REPORT's Memory Size: the emulator's own
        assert (out / "logs" / f"{target['name']}.log").stat().st_size > 0
        assert (out / "logs" / f"{target['name']}-invocations.jsonl").exists()
        for window in target["stages"][0]["windows"]:  # stretched, within its cap
            length = window["end"] - window["start"]
            assert 0.5 <= length < 5.5
            assert window["completed"] >= 662 or length >= 5.0
    md = (out / "report.md").read_text()
    assert "## Lambda power tuning" in md
    assert "| 512 MB | lambda-512" in md
    assert "| 1,769 MB | lambda-1769" in md
    assert (out / "charts" / "power.png").exists()
