"""Real Locust load, in its own process, against real targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cpus import CpuPlan
from harness.loadgen import LocustLoadGenerator
from harness.stats import summarize_stage
from scenarios.catalogue import Scenario
from targets.flask.target import FlaskTarget
from targets.inprocess import InProcessTarget

pytestmark = pytest.mark.integration

STAGE = Scenario(name="it", description="", concurrency=(4,), warmup_s=0.5, duration_s=2.0,
                 cooldown_s=0.2, drain_timeout_s=10.0, sha256="0" * 64, path="it.yaml")


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    return []


def _check_stage(result: Any) -> None:
    [raw] = result.stages
    stage = summarize_stage(raw)
    assert stage["requests"] >= 300, stage["requests"]
    assert stage["rps"] > 0
    assert stage["errors"] == 0, stage["error_kinds"]
    assert stage["truncated"] == 0
    lat = stage["latency_ms"]
    assert lat is not None
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert stage["loadgen_cpu_percent"] is not None
    assert stage["loadgen_cpu_percent"] > 0
    assert stage["target_cpu_percent"] is not None
    assert stage["target_cpu_percent"] > 0
    assert stage["target_rss_mb"] is not None
    assert stage["target_rss_mb"] > 10
    # Locust's own count for the window agrees with ours (completions vs sends).
    assert abs(stage["locust"]["requests"] - stage["requests"]) <= 0.05 * stage["requests"] + 8


def test_flask_under_locust(cpus: CpuPlan, digits, tmp_path: Path,  # type: ignore[no-untyped-def]
                            events: list[dict[str, Any]]) -> None:
    with FlaskTarget("digits", list(cpus.target), "json") as target:
        spec = target.load_spec(digits.example_requests())
        result = LocustLoadGenerator().run("flask", spec, STAGE, list(cpus.loadgen),
                                           tmp_path / "work", tmp_path / "lg.log", events.append)
    _check_stage(result)
    phases = [e.get("phase") for e in events if e.get("event") == "stage"]
    assert phases == ["spawn", "warmup", "measure", "cooldown", "done"]
    assert not (tmp_path / "work").exists()  # raw files folded into the result


def test_inprocess_under_locust(cpus: CpuPlan, digits, tmp_path: Path,  # type: ignore[no-untyped-def]
                                events: list[dict[str, Any]]) -> None:
    target = InProcessTarget("digits", list(cpus.target))
    with target:
        spec = target.load_spec(digits.example_requests())
        result = LocustLoadGenerator().run("inprocess", spec, STAGE, list(cpus.loadgen),
                                           tmp_path / "work", tmp_path / "lg.log", events.append)
    _check_stage(result)
    assert result.info["pool_threads"] == len(cpus.target)
    assert result.info["load_s"] > 0


def test_dead_target_becomes_errors_not_a_crash(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                                tmp_path: Path) -> None:
    target = FlaskTarget("digits", list(cpus.target), "json")
    with target:
        spec = target.load_spec(digits.example_requests())
    # The server is gone before the load starts: every request fails, the run goes on.
    result = LocustLoadGenerator().run("flask", spec, STAGE, list(cpus.loadgen),
                                       tmp_path / "work", tmp_path / "lg.log", lambda e: None)
    stage = summarize_stage(result.stages[0])
    assert stage["requests"] > 0
    assert stage["errors"] == stage["requests"]
    assert stage["rps"] == 0
    assert stage["error_kinds"]
