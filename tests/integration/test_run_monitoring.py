"""`run --monitoring metrics,metrics+log` and `run --metrics --log-predictions 1` as a user
runs them: real servers (and the in-process application, and the Lambda emulator) with
their metrics on and every prediction logged, real load, the metrics scraped at each
stage's edges and in between, and each stage's cross-check.

Needs every target's metrics and prediction log (the servers' and the Lambda emulator's
side of #22)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reports.schema import RunDoc, TargetResult, load_run

pytestmark = pytest.mark.integration

#: Two short closed-loop stages, scraped every 0.5 s as well as at their edges.
SCENARIO = """\
description: monitoring's integration test
concurrency: [1, 4]
warmup_s: 0.5
window_s: 1.0
stability_windows: 2
max_windows: 3
cooldown_s: 0.3
drain_timeout_s: 10
scrape_interval_s: 0.5
"""


def run_with(tmp_path: Path, *options: str) -> RunDoc:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", *options, "--bundle", "digits",
         "--scenario", str(scenario), "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return load_run(out)


def test_flask_counts_what_the_load_generator_sent(tmp_path: Path) -> None:
    run = run_with(tmp_path, "--targets", "flask", "--monitoring", "metrics,metrics+log")
    assert [t["name"] for t in run["targets"]] == ["flask+metrics", "flask+metrics+log"]
    for target in run["targets"]:
        assert target.get("monitoring") == target["name"].removeprefix("flask+")
        assert target.get("deployment") == "flask"
        check_counts(target, logged=target["name"] == "flask+metrics+log")


def test_every_deployment_counts_what_the_load_generator_sent(tmp_path: Path) -> None:
    # One mode: every result in it, names unchanged.
    run = run_with(tmp_path, "--targets", "inprocess,fastapi,grpc,lambda", "--metrics",
                   "--log-predictions", "1")
    assert [t["name"] for t in run["targets"]] == ["inprocess", "fastapi", "grpc", "lambda"]
    for target in run["targets"]:
        assert target.get("monitoring") == "metrics+log"
        check_counts(target, logged=True)


def check_counts(target: TargetResult, logged: bool) -> None:
    assert target["status"] == "ok", target["error"]
    sent = 0
    for stage in target["stages"]:
        check = stage.get("target_metrics")
        assert check is not None, target["name"]
        assert check["agrees"], (target["name"], check["why"])
        # Exact, not within 2%: the first scrape is taken before the stage's users
        # start and the last after its drain (every request answered), so both sides
        # count the same requests, warm-up to drain; parity checks come before the
        # first stage. A request counted on one side only is a bug.
        # (In-process: a handler thread started for a stage checks its first answer
        # without the monitor: it is no user's request.)
        assert check["target_requests"] == check["loadgen_requests"], target["name"]
        assert check["target_requests"] > 0
        assert check["target_errors"] == check["loadgen_errors"] == 0
        assert check["scrapes"] >= 3  # two edges and at least one in between
        assert check["target_mean_ms"] is not None
        assert check["loadgen_mean_ms"] is not None
        assert 0 < check["target_mean_ms"] <= check["loadgen_mean_ms"]
        assert check["target_p99_ms"] is not None
        sent += check["loadgen_requests"]
    log = target.get("prediction_log")
    if not logged:
        assert log is None
        return
    assert log is not None
    assert log["dir"] == f"logs/{target['name']}-predictions"
    assert log["error"] is None
    # At rate 1 every prediction request is logged: the stages' and the parity
    # check's (one request per example).
    parity = target["parity"]
    assert parity is not None
    assert log["rows"] == sent + parity["examples"], target["name"]
