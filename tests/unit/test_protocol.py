"""The plan's typed parts survive the trip through plan.json whole, and a plan that does
not match the driver's idea of it fails at once, by name."""

from __future__ import annotations

import json

import pytest

from harness.loadgen.protocol import Program, Segment, TimelinePlan, Timing
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
