"""The plan and its typed parts survive the trip through plan.json whole, a plan that does
not match the driver's idea of it fails at once, by name, and a stage report comes back
to the orchestrator as the driver wrote it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from harness.loadgen.protocol import (
    SAMPLE_ARRAYS,
    Plan,
    Program,
    Segment,
    StageReport,
    TimelinePlan,
    Timing,
    read_raw_stage,
)
from scenarios import catalogue


@pytest.mark.parametrize("name", sorted(catalogue.available()))
def test_every_catalogue_scenario_round_trips(name: str) -> None:
    scenario = catalogue.load(name)
    timing = Timing.from_scenario(scenario)
    program = Program.from_scenario(scenario, trials=3, slo_p99_ms=50.0)
    assert Timing.from_json(json.loads(json.dumps(timing.to_json()))) == timing
    assert Program.from_json(json.loads(json.dumps(program.to_json()))) == program
    assert timing.warmup_max_s >= timing.warmup_s
    assert program.trials == 3
    assert bool(program.timeline) == bool(scenario.timeline)


def test_timeline_segments_are_named() -> None:
    program = Program.from_scenario(catalogue.load("spike"), trials=1, slo_p99_ms=None)
    assert isinstance(program.timeline, TimelinePlan)
    assert all(isinstance(s, Segment) and s.label for s in program.timeline.segments)


def test_a_timing_key_the_driver_does_not_know_fails_by_name() -> None:
    doc = {**Timing.from_scenario(catalogue.load("smoke")).to_json(), "warmup": 1.0}
    with pytest.raises(TypeError, match="warmup"):
        Timing.from_json(doc)


def _plan() -> Plan:
    scenario = catalogue.load("quick")
    return Plan(spec={"protocol": "http", "url": "http://127.0.0.1:1", "cpus": [1]},
                timing=Timing.from_scenario(scenario),
                program=Program.from_scenario(scenario, trials=2, slo_p99_ms=None),
                loadgen_cpus=(0,), loadgen_workers=2, master="127.0.0.1:5557",
                target="flask", reference=[[{"label": 3, "probabilities": [0.1, 0.9]}]])


def test_the_plan_round_trips_whole_and_workers_get_it_without_the_reference() -> None:
    plan = _plan()
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    sent = Plan.from_json(json.loads(json.dumps(plan.for_workers().to_json())))
    assert sent.reference is None
    assert sent.program == plan.program
    assert sent.loadgen_workers == 2


def test_a_stage_report_is_read_back_whole_with_its_samples(tmp_path: Path) -> None:
    """What the driver writes (StageReport.to_json, stage-N.npz) is what the orchestrator
    reads (read_raw_stage): every field, none renamed on the way."""
    report = StageReport(
        mode="open", trial=1, concurrency=None, rate=50.0, arrival="poisson", fraction=0.5,
        capacity_rps=100.0, max_inflight=64, late_tolerance_ms=5.0, window_start=10.0,
        window_end=12.0, truncated=1, unanswered=2, unsent=3, samples="stage-0.npz",
        figures={"requests": 4, "ok_requests": 3, "rps": 1.5, "p99_ms": 2.0,
                 "error_rate": 0.25, "valid": False},
        target_cpu_percent=40.0, target_cpu_s=0.8, loadgen_cpu_percent=10.0,
        loadgen_cpu_s=0.2, target_rss_mb=100.0, target_pss_mb=90.0, worker_samples=[2, 2],
        stage_started_at=9.0, target_died_at=11.9, dead_pids=[123], sweep_stop="flat")
    columns = {k: np.arange(4, dtype=float) for k in SAMPLE_ARRAYS}
    np.savez(tmp_path / report.samples, **columns)
    raw = read_raw_stage(tmp_path, json.loads(json.dumps(report.to_json())))
    assert {f.name: getattr(raw, f.name) for f in dataclasses.fields(StageReport)} \
        == dataclasses.asdict(report)
    assert list(raw.latency_ms) == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        raw.sweep_stop = None  # type: ignore[misc]
