"""Stability windows, the enough-requests rule, verdict reasons, sweeps' stopping rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from harness.cpus import CpuPlan
from harness.loadgen.analysis.sweep import capacity, stage_figures, sweep_should_stop
from harness.loadgen.analysis.validity import (
    Rules,
    Window,
    is_stable,
    measure_window,
    min_requests,
    reasons,
    settled,
    stability,
)
from harness.loadgen.recorder import SampleRecorder
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.runner import Runner, RunPlan
from reports.document import summary_items
from reports.objective import DEFAULT_SLO_P99_MS, latency_bounds, objective, sweep_p99_ms
from reports.render import render_run_dir
from reports.trials import estimate, groups, welch_p
from scenarios.catalogue import Scenario, Sweep
from targets.fake import FakeTarget


def test_min_requests_match_mlperf_loadgen() -> None:
    # LoadGen's own figures: 64 queries for p90, 662 for p99 (99% confidence).
    assert min_requests(0.90) == 64
    assert min_requests(0.99) == 662
    assert min_requests(0.999) == 6636


def windows(rps: list[float], p50: list[float], completed: int = 1000) -> list[Window]:
    return [Window(float(i), float(i + 1), completed, r, p) for i, (r, p)
            in enumerate(zip(rps, p50, strict=True))]


def test_stable_needs_the_last_three_within_ten_percent_on_both() -> None:
    assert is_stable(windows([100, 105, 109], [1.0, 1.0, 1.0]), 3, 0.10)
    assert not is_stable(windows([100, 105, 111], [1.0, 1.0, 1.0]), 3, 0.10)  # rps 11%
    assert not is_stable(windows([100, 100, 100], [1.0, 1.2, 1.0]), 3, 0.10)  # p50 20%
    assert not is_stable(windows([100, 100], [1.0, 1.0]), 3, 0.10)  # too few windows
    # A noisy start does not matter once the last three agree.
    assert is_stable(windows([10, 300, 100, 101, 102], [9, 1, 1.0, 1.0, 1.0]), 3, 0.10)
    # A window with no answers is never stable (perf_analyzer's rule).
    empty = windows([0, 0, 0], [1.0, 1.0, 1.0], completed=0)
    assert not is_stable(empty, 3, 0.10)


def test_settled_also_needs_enough_requests_for_p99() -> None:
    assert not settled(windows([100] * 3, [1.0] * 3, completed=200), 3, 0.10)  # 600 < 662
    assert settled(windows([100] * 3, [1.0] * 3, completed=221), 3, 0.10)


def test_stability_is_judged_apart_from_the_request_count() -> None:
    # Agreeing windows with too few requests (600 < 662): not settled, yet stable.
    few = windows([100] * 3, [1.0] * 3, completed=200)
    assert not settled(few, 3, 0.10)
    assert stability(few, 3, 0.10) == (True, None)
    stable, why = stability(windows([100, 100, 130], [1.0] * 3, completed=200), 3, 0.10)
    assert not stable
    assert str(why).startswith("unstable: the last 3 windows still differed by more than 10%")


def test_measure_window_counts_completions_inside_it() -> None:
    start = np.array([0.0, 0.5, 0.9, 1.5])
    latency = np.array([100.0, 100.0, 200.0, 100.0])  # done at 0.1, 0.6, 1.1, 1.6 s
    ok = np.array([True, True, True, False])
    w = measure_window(start, latency, ok, 0.0, 1.0)
    assert w.completed == 2
    assert w.rps == 2.0
    assert w.p50_ms == 100.0


def base_reasons(**over: Any) -> list[str]:
    args: dict[str, Any] = dict(requests=1000, ok_requests=1000, error_rate=0.0,
                                loadgen_cpu_percent=50.0, stable=True, instability=None,
                                late=0, late_tolerance_ms=None, queued=0, max_inflight=None,
                                warmup_complete=True, rules=Rules())
    args.update(over)
    return reasons(**args)


def test_each_rule_gives_its_reason() -> None:
    assert base_reasons() == []
    assert "too few requests for p99: 500 < 662" in base_reasons(ok_requests=500)[0]
    assert base_reasons(stable=False, instability="unstable: x") == ["unstable: x"]
    assert "load generator CPU 95.0%" in base_reasons(loadgen_cpu_percent=95.0)[0]
    late = base_reasons(late=11, late_tolerance_ms=2.0)
    assert "load generator fell behind: 1.1% of requests" in late[0]
    assert base_reasons(late=10, late_tolerance_ms=2.0) == []  # exactly 1% is allowed
    assert "offered rate not sustained" in base_reasons(queued=50, max_inflight=8)[0]
    assert "error rate 2.00% above" in base_reasons(error_rate=0.02)[0]
    assert base_reasons(error_rate=0.02, rules=Rules(max_error_rate=0.05)) == []
    assert "warm-up incomplete" in base_reasons(warmup_complete=False)[0]
    assert base_reasons(ok_requests=0) == ["no successful requests in the measurement window"]
    assert "3 arrivals due in the window were never sent" in base_reasons(unsent=3)[0]


def test_sweep_stops_by_model_analyzers_rule() -> None:
    def st(rps: float, p99: float = 1.0, errors: float = 0.0) -> dict[str, Any]:
        return {"rps": rps, "p99_ms": p99, "error_rate": errors}

    growing = [st(100), st(200), st(400), st(800)]
    assert sweep_should_stop(growing, 0.05, 4, None, 0.01) is None
    flat = [st(1000), st(1020), st(1040), st(1045)]
    assert "at most 5%" in str(sweep_should_stop(flat, 0.05, 4, None, 0.01))
    assert sweep_should_stop(flat[:3], 0.05, 4, None, 0.01) is None  # not 4 steps yet
    over = [st(100, p99=60.0)]
    assert "passed the SLO of 50 ms" in str(sweep_should_stop(over, 0.05, 4, 50.0, 0.01))
    failing = [st(100, errors=0.2)]
    assert "error rate" in str(sweep_should_stop(failing, 0.05, 4, None, 0.01))
    assert capacity([st(100, 10.0), st(300, 40.0), st(350, 90.0)], 50.0, 0.01)["rps"] == 300
    assert capacity([st(100, 90.0)], 50.0, 0.01) is None


def test_stage_figures_select_by_send_time() -> None:
    start = np.array([0.5, 1.0, 1.5, 2.5])
    latency = np.array([1.0, 2.0, 3.0, 4.0])
    ok = np.array([True, True, False, True])
    fig = stage_figures(start, latency, ok, 1.0, 2.0)
    assert fig["rps"] == 1.0
    assert fig["p99_ms"] == 2.0
    assert fig["error_rate"] == 0.5


def test_recorder_counts_open_loop_latency_from_the_intended_time() -> None:
    rec = SampleRecorder()
    rec.on_request("http", "p", 1.0, 0, None, start_time=100.005,
                   context={"intended": 100.0, "queued": True})
    rec.on_request("http", "p", 1.0, 0, None, start_time=200.0, context={})
    assert list(rec.start_s) == [100.0, 200.0]
    assert list(rec.latency_ms) == pytest.approx([6.0, 1.0])
    assert list(rec.send_delay_ms) == pytest.approx([5.0, 0.0])
    assert list(rec.queued) == [1, 0]


class NoisyFake(FakeTarget):
    """The fake target whose successive windows' throughput follows a script."""

    noise: ClassVar[list[float]] = []

    def load_spec(self, examples: Any) -> Any:
        return {**super().load_spec(examples), "window_noise": self.noise}


def run_fake(tmp_path: Path, scenario: Scenario, noise: list[float] | None = None,
             trials: int = 1, slo: float | None = None, capacity_: int = 1,
             service_time_s: float = 0.002) -> Any:
    def make(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> Any:
        target = NoisyFake(plan.bundle, name=name, service_time_s=service_time_s,
                           capacity=capacity_)
        target.noise = noise or []
        return target

    plan = RunPlan(targets=("fake",), bundle="digits", scenario=scenario,
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path, trials=trials,
                   slo_p99_ms=slo)
    return Runner(plan, SimulatedLoadGenerator(), target_factory=make).run()


def scenario(**over: Any) -> Scenario:
    base: dict[str, Any] = dict(name="unit", description="", concurrency=(1,), warmup_s=0.5,
                                window_s=2.0, cooldown_s=0.5, drain_timeout_s=1.0,
                                sha256="0" * 64, path="unit.yaml")
    base.update(over)
    return Scenario(**base)


def test_scripted_noise_settles_after_the_windows_agree(tmp_path: Path) -> None:
    # 1.5x, 0.7x, then steady: windows 3..5 are the first three to agree.
    run = run_fake(tmp_path, scenario(), noise=[1.5, 0.7, 1.0, 1.02, 0.99])
    [stage] = run["targets"][0]["stages"]
    assert stage["stable"]
    assert stage["valid"]
    assert len(stage["windows"]) == 5
    assert stage["windows_kept"] == 3
    assert stage["duration_s"] == pytest.approx(6.0)  # only the three kept windows


def test_scripted_noise_that_never_settles_is_invalid(tmp_path: Path) -> None:
    run = run_fake(tmp_path, scenario(max_windows=4), noise=[1.0, 1.3, 1.0, 1.3, 1.0])
    [stage] = run["targets"][0]["stages"]
    assert not stage["stable"]
    assert not stage["valid"]
    assert len(stage["windows"]) == 4
    assert stage["reasons"][0].startswith("unstable: the last 3 windows still differed")


def test_windows_that_agree_with_too_few_requests_are_not_unstable(tmp_path: Path) -> None:
    # Scripted windows within 2% of each other, 0.2 s long at 500 req/s: the last 3 agree
    # but hold 300 requests (< 662), so the stage measures all 4 windows and is INVALID
    # for too few requests only.
    run = run_fake(tmp_path, scenario(window_s=0.2, max_windows=4),
                   noise=[1.0, 1.02, 0.99, 1.01])
    [stage] = run["targets"][0]["stages"]
    assert len(stage["windows"]) == 4
    assert stage["stable"]
    assert not stage["valid"]
    assert len(stage["reasons"]) == 1
    assert stage["reasons"][0].startswith("too few requests for p99: 300 < 662")


def test_sweep_then_rate_fractions_of_the_capacity(tmp_path: Path) -> None:
    sc = scenario(concurrency=(), sweep=Sweep(start=1, factor=2, max=64, patience=3),
                  rate_fractions=(0.5, 2.0))
    run = run_fake(tmp_path, sc, capacity_=4)
    stages = run["targets"][0]["stages"]
    closed = [s for s in stages if s["mode"] == "closed"]
    # 4 servers x 500/s: flat from 4 users on; patience 3 stops at 16.
    assert [s["concurrency"] for s in closed] == [1, 2, 4, 8, 16]
    assert "at most 5%" in closed[-1]["sweep_stop"]
    half, double = [s for s in stages if s["mode"] == "open"]
    assert half["open_loop"]["capacity_rps"] == pytest.approx(2000)
    assert half["open_loop"]["rate"] == pytest.approx(1000)
    assert half["valid"]
    assert half["concurrency"] is None
    # Twice the capacity: every arrival waits for a slot, and the stage says so.
    assert not double["valid"]
    assert any("offered rate not sustained" in r for r in double["reasons"])


def test_sweep_stops_at_the_slo(tmp_path: Path) -> None:
    sc = scenario(concurrency=(), sweep=Sweep(start=1, factor=2, max=64))
    run = run_fake(tmp_path, sc, slo=5.0)  # 1 server, 2 ms: 4 users wait 8 ms
    closed = run["targets"][0]["stages"]
    assert [s["concurrency"] for s in closed] == [1, 2, 4]
    assert "passed the SLO" in closed[-1]["sweep_stop"]

    items = " ".join(summary_items(run))
    assert "**fake** sweep stopped after 4 users: p99 8 ms passed the SLO of 5 ms" in items
    assert "the default objective" not in items  # the user's own
    assert "highest throughput within p99 <= 5 ms: 500 req/s at 1 user" in items


def test_sweep_p99_falls_back_to_the_decisions_default() -> None:
    assert sweep_p99_ms({}, None) == DEFAULT_SLO_P99_MS
    assert sweep_p99_ms({"rps": 500.0}, None) == DEFAULT_SLO_P99_MS
    assert latency_bounds({"rps": 500.0}, None) == ({"p99": DEFAULT_SLO_P99_MS}, True)
    assert sweep_p99_ms({"p99": 50.0}, 50.0) == 50.0
    assert sweep_p99_ms({}, 30.0) == 30.0  # the scenario's slo_p99_ms
    assert sweep_p99_ms({"p50": 20.0}, None) is None  # the decision bounds p50 only


def test_sweep_without_an_slo_stops_at_the_decisions_default(tmp_path: Path) -> None:
    # 4 servers of 40 ms: p99 40 ms up to 4 users (100 req/s), 80 ms at 8, 160 ms at 16.
    sc = scenario(concurrency=(), window_s=20.0, sweep=Sweep(start=1, factor=2, max=64))
    run = run_fake(tmp_path, sc, capacity_=4, service_time_s=0.04)
    closed = run["targets"][0]["stages"]
    assert [s["concurrency"] for s in closed] == [1, 2, 4, 8, 16]
    assert closed[-1]["sweep_stop"] == \
        f"p99 160 ms passed the SLO of {DEFAULT_SLO_P99_MS:g} ms"
    # The objective as given stays none; the decision applies the same default.
    assert run["metadata"]["slo_p99_ms"] is None
    assert objective(run).latency_ms == {"p99": DEFAULT_SLO_P99_MS}
    # And the report says whose objective stopped the sweep.

    items = " ".join(summary_items(run))
    assert "passed the SLO of 100 ms (the default objective; --slo sets another)" in items


def test_rate_capacity_without_an_slo_is_within_the_decisions_default(tmp_path: Path
                                                                      ) -> None:
    # 2 servers of 150 ms: every closed-loop stage's p99 is above the default 100 ms, so
    # there is no capacity the decision would accept, and no rate_fractions of one.
    sc = scenario(concurrency=(), window_s=200.0, sweep=Sweep(start=1, factor=2, max=64),
                  rate_fractions=(0.5,))
    run = run_fake(tmp_path, sc, capacity_=2, service_time_s=0.15)
    stages = run["targets"][0]["stages"]
    assert [(s["mode"], s["concurrency"]) for s in stages] == [("closed", 1)]
    assert "passed the SLO of 100 ms" in stages[0]["sweep_stop"]


def test_trials_repeat_every_stage(tmp_path: Path) -> None:
    run = run_fake(tmp_path, scenario(concurrency=(1, 4)), trials=3)
    stages = run["targets"][0]["stages"]
    assert [(s["trial"], s["concurrency"]) for s in stages] == [
        (0, 1), (0, 4), (1, 1), (1, 4), (2, 1), (2, 4)]
    assert run["metadata"]["trials"] == 3


def test_trial_statistics() -> None:
    e = estimate([100.0, 110.0, 120.0])
    assert e.median == 110.0
    assert e.mean == 110.0
    # t(0.975, 2) = 4.303; s = 10; half-width = 4.303 * 10 / sqrt(3) = 24.84.
    assert e.half_width == pytest.approx(24.84, abs=0.01)
    assert estimate([5.0]).half_width is None
    apart = welch_p([100.0, 101.0, 99.0], [200.0, 201.0, 199.0])
    assert apart is not None
    assert apart < 0.001
    close = welch_p([100.0, 110.0, 90.0], [105.0, 95.0, 102.0])
    assert close is not None
    assert close > 0.5
    assert welch_p([1.0], [2.0, 3.0]) is None


def test_report_gives_trials_and_ties(tmp_path: Path) -> None:
    run_fake(tmp_path, scenario(concurrency=(1, 4)), trials=3)
    md = render_run_dir(tmp_path).markdown.read_text()
    assert "## Trials" in md
    assert "| fake | 4 users | 3 | 500 |" in md


def test_trials_keep_sweep_steps_apart_from_fixed_levels(tmp_path: Path) -> None:
    sc = scenario(concurrency=(1,), sweep=Sweep(start=1, factor=2, max=2))
    run = run_fake(tmp_path, sc, trials=2)
    sizes = {key: len(stages) for key, stages in groups(run["targets"][0]).items()}
    assert sizes == {("users", 1.0, False): 2, ("users", 1.0, True): 2,
                     ("users", 2.0, True): 2}
