"""A smoke-sized timeline (a few seconds) under real Locust against a real served target:
the segments change the users in one run, and each has its figures and the series its
memory readings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from scenarios.catalogue import Segment
from targets.flask.target import FlaskTarget
from tests.integration.stages import drive, one_window

pytestmark = pytest.mark.integration

SCENARIO = one_window(concurrency=(), warmup_s=0.5, cooldown_s=0.2, sample_s=0.5,
                      timeline=(Segment(2, 1.5, "baseline"), Segment(6, 1.5, "burst"),
                                Segment(2, 1.0, "after")))


def test_flask_timeline_segments_and_memory(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                            tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    with FlaskTarget("digits", list(cpus.target), "json") as target:
        result = drive("flask", target.load_spec(digits.example_requests()),
                       list(cpus.loadgen), tmp_path, SCENARIO, events=events)
    assert result.error is None
    [raw] = result.stages
    assert raw.mode == "timeline"
    stage = summarize_stage(raw)
    assert stage["errors"] == 0, stage["error_kinds"]
    assert stage["unanswered"] == 0  # users leaving at the ramp-down finished their request
    timeline = stage["timeline"]
    segments = timeline["segments"]
    assert [(s["label"], s["users"]) for s in segments] == [
        ("baseline", 2), ("burst", 6), ("after", 2)]
    for seg, planned in zip(segments, (1.5, 1.5, 1.0), strict=True):
        assert seg["duration_s"] == pytest.approx(planned, abs=0.25)
        assert seg["requests"] > 0
        assert seg["ok"] == seg["requests"]
        assert seg["rps"] > 0
        assert 0 < seg["p50_ms"] <= seg["p99_ms"] <= seg["max_ms"]
        assert seg["loadgen_cpu_percent"] is not None
        assert seg["loadgen_cpu_percent"] > 0
        assert seg["target_cpu_percent"] is not None
        assert seg["target_cpu_percent"] > 0
    assert sum(s["requests"] for s in segments) == stage["requests"]
    # The series: one point every 0.5 s over the 4 s timeline, with the users at each
    # and the target's RSS read while the load ran.
    series = timeline["series"]
    assert len(series) == pytest.approx(8, abs=1)
    assert {p["users"] for p in series} == {2, 6}
    assert sum(p["rss_mb"] is not None for p in series) >= len(series) - 1
    assert all(p["rss_mb"] is None or p["rss_mb"] > 10 for p in series)
    memory = timeline["memory"]
    assert memory["readings"] >= 8
    assert memory["start_mb"] > 10
    assert memory["end_mb"] > 10
    assert memory["slope_mb_per_min"] is not None
    # The progress events name each segment as it starts.
    segment_events = [(e["segment"], e["concurrency"]) for e in events
                      if e.get("event") == "stage" and e.get("segment")]
    assert segment_events == [(1, 2), (2, 6), (3, 2)]
