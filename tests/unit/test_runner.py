"""The runner end to end with the fake target and the simulated load: exact numbers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cpus import CpuPlan
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.parity import ParityError
from harness.results import choose_out_dir
from harness.runner import Runner, RunPlan
from reports.document import summary_items
from reports.schema import SCHEMA_VERSION, load_run, read_samples
from scenarios.catalogue import Scenario
from targets.bundles.protocol import Prediction, compare_predictions
from targets.errors import TargetStartError
from targets.fake import FakeTarget

SCENARIO = Scenario(name="unit", description="", concurrency=(1, 4), warmup_s=0.5,
                    stability_windows=1, max_windows=1,
                    window_s=2.0, cooldown_s=0.5, drain_timeout_s=1.0, sha256="0" * 64,
                    path="unit.yaml")


def plan(out: Path, targets: tuple[str, ...] = ("fake",)) -> RunPlan:
    return RunPlan(targets=targets, bundle="digits", scenario=SCENARIO,
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=out)


def fake_factory(service_s: float = 0.002, capacity: int = 1, cls: Any = FakeTarget) -> Any:
    def make(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> Any:
        return cls(plan.bundle, name=name, service_time_s=service_s, capacity=capacity)
    return make


def test_fixed_latency_target_gives_exact_figures(tmp_path: Path) -> None:
    run = Runner(plan(tmp_path), SimulatedLoadGenerator(), target_factory=fake_factory()).run()
    assert run["status"] == "complete"
    [target] = run["targets"]
    assert target["status"] == "ok"
    one, four = target["stages"]
    # 1 user, 2 ms service: 500 req/s at exactly 2 ms.
    assert one["rps"] == pytest.approx(500, rel=1e-3)
    assert one["latency_ms"] is not None
    assert one["latency_ms"]["p50"] == pytest.approx(2.0)
    assert one["latency_ms"]["p99"] == pytest.approx(2.0)
    # 4 users on a 1-request server: same throughput, 4x the wait (Little's law).
    assert four["rps"] == pytest.approx(500, rel=1e-3)
    assert four["latency_ms"] is not None
    assert four["latency_ms"]["p50"] == pytest.approx(8.0)
    assert four["errors"] == 0
    assert target["parity"] is not None
    assert target["parity"]["ok"]


def test_result_file_has_the_schema(tmp_path: Path) -> None:
    Runner(plan(tmp_path), SimulatedLoadGenerator(), target_factory=fake_factory()).run()
    run = load_run(tmp_path)
    assert run["schema_version"] == SCHEMA_VERSION
    meta = run["metadata"]
    for key in ("cpu_model", "cpu_count", "python", "torch", "locust", "deploybench",
                "git_commit", "target_cpus", "loadgen_cpus", "bundle", "scenario"):
        assert key in meta, key
    stage = run["targets"][0]["stages"][0]
    for key in ("concurrency", "requests", "errors", "rps", "latency_ms",
                "target_cpu_percent", "target_rss_mb", "loadgen_cpu_percent"):
        assert key in stage, key
    assert set(stage["latency_ms"] or {}) >= {"p50", "p90", "p95", "p99", "p999", "max", "mean"}


def test_raw_samples_are_stored_beside_the_result(tmp_path: Path) -> None:
    run = Runner(plan(tmp_path), SimulatedLoadGenerator(), target_factory=fake_factory()).run()
    samples = read_samples(tmp_path)
    stage = run["targets"][0]["stages"][0]
    measured = (samples["stage"] == 0) & (samples["phase"] == "measure")
    assert measured.sum() == stage["requests"]
    assert set(np.unique(samples["phase"])) == {"warmup", "measure", "cooldown"}
    assert stage["warmup_requests"] == ((samples["stage"] == 0)
                                        & (samples["phase"] == "warmup")).sum()


class WrongTarget(FakeTarget):
    def predict(self, batch: Any) -> list[Prediction]:
        preds = super().predict(batch)
        return [Prediction((p.label + 1) % 10, p.probabilities) for p in preds]


def test_parity_mismatch_aborts_and_keeps_what_was_measured(tmp_path: Path) -> None:
    good = fake_factory()
    bad = fake_factory(cls=WrongTarget)

    def factory(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> Any:
        return (bad if name == "bad" else good)(name, plan, encoding, log_dir)

    runner = Runner(plan(tmp_path, ("fake", "bad")), SimulatedLoadGenerator(),
                    target_factory=factory)
    with pytest.raises(ParityError,
                       match=r"bad predicts class \d, in-process predicts \d on example 0"):
        runner.run()
    run = load_run(tmp_path)
    assert run["status"] == "partial"
    assert [t["name"] for t in run["targets"]] == ["fake"]  # the first is kept


class BrokenTarget(FakeTarget):
    def start(self) -> None:
        raise TargetStartError("would not start")


def test_target_that_fails_to_start_is_reported_and_others_measured(tmp_path: Path) -> None:
    def factory(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> Any:
        cls = BrokenTarget if name == "broken" else FakeTarget
        return fake_factory(cls=cls)(name, plan, encoding, log_dir)

    run = Runner(plan(tmp_path, ("broken", "fake")), SimulatedLoadGenerator(),
                 target_factory=factory).run()
    broken, fake = run["targets"]
    assert broken["status"] == "failed"
    assert broken["error"] == "would not start"
    assert fake["status"] == "ok"
    assert run["status"] == "complete"


def test_out_dir_is_never_overwritten(tmp_path: Path) -> None:
    first, note = choose_out_dir(tmp_path / "demo")
    assert first == tmp_path / "demo"
    assert note is None
    (first / "run.json").write_text("{}")
    second, note = choose_out_dir(tmp_path / "demo")
    assert second == tmp_path / "demo-2"
    assert note is not None
    assert "demo-2" in note
    (second / "run.json").write_text("{}")
    third, _ = choose_out_dir(tmp_path / "demo")
    assert third == tmp_path / "demo-3"
    assert (first / "run.json").read_text() == "{}"


def test_parity_catches_nan_probabilities() -> None:
    want = [Prediction(1, (0.1, 0.9))]
    problem, _ = compare_predictions(want, [Prediction(1, (float("nan"), 0.9))])
    assert problem is not None
    assert "finite" in problem


def test_cold_starts_are_measured_before_the_stages(tmp_path: Path) -> None:
    run_plan = replace(plan(tmp_path), scenario=replace(SCENARIO, cold_starts=3))
    run = Runner(run_plan, SimulatedLoadGenerator(), target_factory=fake_factory()).run()
    cold = run["targets"][0].get("cold_starts")
    assert cold is not None
    assert len(cold["samples"]) == 3
    assert cold["total_ms"]["p50"] == pytest.approx(500.0)
    assert "cold start p50 500 ms" in " ".join(summary_items(run))
