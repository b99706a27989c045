"""`run --targets flask --monitoring metrics,metrics+log` as a user runs it: a real Flask
server with its metrics on, then another also logging every prediction, real Locust load,
the metrics scraped at each stage's edges and in between, and each stage's cross-check.

Needs the Flask server's GET /metrics and prediction log (the servers' side of #22)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reports.schema import load_run

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


def test_flask_counts_what_the_load_generator_sent(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "flask", "--monitoring",
         "metrics,metrics+log", "--bundle", "digits", "--scenario", str(scenario),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert [t["name"] for t in run["targets"]] == ["flask+metrics", "flask+metrics+log"]
    for target in run["targets"]:
        assert target["status"] == "ok", target["error"]
        raw = dict(target)
        assert raw["monitoring"] == target["name"].removeprefix("flask+")
        assert raw["deployment"] == "flask"
        sent = 0
        for stage in target["stages"]:
            check = dict(stage)["target_metrics"]
            assert check["agrees"], check["why"]
            # Exact, not within 2%: the first scrape is taken before the stage's users
            # start and the last after its drain (every request answered), so both sides
            # count the same requests, warm-up to drain; parity checks come before the
            # first stage. A request counted on one side only is a bug.
            assert check["target_requests"] == check["loadgen_requests"]
            assert check["target_requests"] > 0
            assert check["target_errors"] == check["loadgen_errors"] == 0
            assert check["scrapes"] >= 3  # two edges and at least one in between
            assert 0 < check["target_mean_ms"] <= check["loadgen_mean_ms"]
            assert check["target_p99_ms"] is not None
            sent += check["loadgen_requests"]
        logged = raw.get("prediction_log")
        if target["name"] == "flask+metrics":
            assert logged is None
            continue
        assert logged is not None
        assert logged["dir"] == "logs/flask+metrics+log-predictions"
        assert logged["error"] is None
        # At rate 1 every prediction request is logged: the stages' and the parity
        # check's (one request per example).
        parity = target["parity"]
        assert parity is not None
        assert logged["rows"] == sent + parity["examples"]
