"""Timeline stages (spike, soak) through the simulated load generator, exactly: segment
figures, the series, memory growth, the verdict, run.json and the rendered reports."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from rich.console import Console

from harness.console import ConsoleObserver
from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.analysis.timeline import NO_STABILITY
from harness.loadgen.analysis.validity import Rules
from harness.loadgen.launch import LoadJob
from harness.loadgen.protocol import RawStage
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.runner import Runner, RunPlan
from reports.charts import CHARTS
from reports.console import print_run
from reports.render import render_run_dir
from reports.schema import RunDoc, load_run, read_samples
from scenarios.catalogue import Scenario, Segment
from targets.base import LoadSpec
from targets.fake import FakeTarget

PNG = b"\x89PNG\r\n\x1a\n"

SPIKE = Scenario(name="unit-spike", description="", concurrency=(), warmup_s=1.0,
                 window_s=1.0, cooldown_s=0.5, drain_timeout_s=1.0, sha256="0" * 64,
                 path="unit-spike.yaml", sample_s=1.0,
                 timeline=(Segment(2, 10, "baseline"), Segment(8, 10, "burst"),
                           Segment(2, 10, "after")))


class GrowingFake(FakeTarget):
    """A fake target whose memory grows at a fixed rate and whose new users' first
    requests are cold starts (as Lambda's would be)."""

    growth_mb_per_min: ClassVar[dict[str, float]] = {"fast": 0.0, "slow": 3.0}

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        spec: dict[str, Any] = dict(super().load_spec(examples))
        spec.update(rss_mb=200.0, rss_growth_mb_per_min=self.growth_mb_per_min[self.name],
                    cold_on_scale_out=self.name == "slow")
        return spec  # type: ignore[return-value]


def simulate(out: Path, scenario: Scenario = SPIKE) -> RunDoc:
    """fast: 2 servers of 1 ms; slow: 2 servers of 4 ms, memory growing 3 MB/min."""
    plan = RunPlan(targets=("fast", "slow"), bundle="digits", scenario=scenario,
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=out)

    def factory(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> FakeTarget:
        return GrowingFake(plan.bundle, name=name,
                           service_time_s=0.001 if name == "fast" else 0.004, capacity=2)

    return Runner(plan, SimulatedLoadGenerator(), target_factory=factory).run()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spike")
    simulate(out)
    return out


def _stage(run: RunDoc, target: str) -> Any:
    [stage] = next(t for t in run["targets"] if t["name"] == target)["stages"]
    return stage


def test_each_segment_has_its_own_figures(run_dir: Path) -> None:
    run = load_run(run_dir)
    for name, service_ms in (("fast", 1.0), ("slow", 4.0)):
        stage = _stage(run, name)
        assert stage["mode"] == "timeline"
        assert stage["concurrency"] is None
        assert stage["valid"], stage["reasons"]
        segments = stage["timeline"]["segments"]
        assert [s["label"] for s in segments] == ["baseline", "burst", "after"]
        assert [s["users"] for s in segments] == [2, 8, 2]
        # Little's law: 2 users on 2 servers answer in one service time; 8 users queue
        # for 4; throughput stays at 2 servers / service time.
        assert [s["p50_ms"] for s in segments] == [service_ms, 4 * service_ms, service_ms]
        assert [s["p99_ms"] for s in segments] == [service_ms, 4 * service_ms, service_ms]
        assert [s["max_ms"] for s in segments] == [service_ms, 4 * service_ms, service_ms]
        for seg in segments:
            assert seg["rps"] == pytest.approx(2000.0 / service_ms)
            assert seg["requests"] == seg["ok"] == round(seg["rps"] * 10)
            assert seg["errors"] == 0
            assert seg["error_rate"] == 0.0
            assert seg["duration_s"] == 10.0
        assert [s["start_s"] for s in segments] == [0.0, 10.0, 20.0]
        # The stage's own figures cover the whole timeline.
        assert stage["requests"] == sum(s["requests"] for s in segments)
        assert stage["duration_s"] == 30.0
        assert stage["timeline"]["stability"] == NO_STABILITY
    # Cold starts: the burst's 6 new users' first requests (the slow fake marks them).
    assert [s["cold_requests"] for s in _stage(run, "slow")["timeline"]["segments"]] == [
        0, 6, 0]
    assert [s["cold_requests"] for s in _stage(run, "fast")["timeline"]["segments"]] == [
        0, 0, 0]


def test_series_every_sample_with_users_and_memory(run_dir: Path) -> None:
    run = load_run(run_dir)
    series = _stage(run, "fast")["timeline"]["series"]
    assert [p["t"] for p in series] == [float(t) for t in range(1, 31)]
    assert [p["users"] for p in series] == [2] * 10 + [8] * 10 + [2] * 10
    assert set(series[0]) == {"t", "users", "rps", "p50_ms", "p99_ms", "errors", "cold",
                              "rss_mb"}
    # Completed in each second: steady 2,000 req/s; latency up only during the burst.
    assert all(p["rps"] == pytest.approx(2000.0, rel=0.01) for p in series)
    assert [p["p99_ms"] for p in series[8:12]] == [1.0, 1.0, 4.0, 4.0]
    assert all(p["errors"] == 0 for p in series)
    assert all(p["rss_mb"] == 200.0 for p in series)
    slow = _stage(run, "slow")["timeline"]["series"]
    assert [p["rss_mb"] for p in slow[:2]] == pytest.approx([200.05, 200.1])


def test_memory_growth_is_end_minus_start_and_a_slope(run_dir: Path) -> None:
    run = load_run(run_dir)
    fast = _stage(run, "fast")["timeline"]["memory"]
    assert fast["growth_mb"] == 0.0
    assert fast["slope_mb_per_min"] == 0.0
    slow = _stage(run, "slow")["timeline"]["memory"]
    assert slow["readings"] == 31  # at 0, 1, ..., 30 s
    assert slow["start_mb"] == 200.0
    assert slow["end_mb"] == pytest.approx(201.5)  # 3 MB/min for 30 s
    assert slow["growth_mb"] == pytest.approx(1.5)
    assert slow["slope_mb_per_min"] == pytest.approx(3.0)
    assert slow["peak_mb"] == pytest.approx(201.5)


def test_report_shows_segments_charts_and_memory(run_dir: Path) -> None:
    rendered = render_run_dir(run_dir)
    md = rendered.markdown.read_text()
    assert "## Timeline" in md
    assert "| segment | users | s | requests | req/s | p50 ms | p99 ms | max ms |" in md
    assert "| burst | 8 | 10.0 | 5000 | 500 | 16.0 | 16.0 | 16.0 | 0 (0.0%) | 6 |" in md
    assert "| slow | timeline 2→8→2 users | 200.0 | 201.5 | +1.5 | +3.00 | 201.5 | 31 |" in md
    assert "![" in md
    assert "](charts/timeline.png)" in md
    assert "](charts/timeline_memory.png)" in md
    assert "valid (no stability rule)" in md
    assert ("**slow** timeline 2→8→2 users: p99 4.00 ms (baseline) → 16.0 ms (burst) → "
            "4.00 ms (after); cold starts 6 in burst; RSS +1.5 MB over the timeline "
            "(+3.00 MB/min)") in md
    # The decision does not take a transient for a capacity.
    assert "only a timeline ran" in md
    charts = {p.name: p for p in rendered.charts}
    for name in ("timeline.png", "timeline_memory.png"):
        assert charts[name].read_bytes().startswith(PNG)
        assert charts[name].stat().st_size > 5000
    html = rendered.html.read_text()
    sources = re.findall(r'src="([^"]+)"', html)
    assert len(sources) == len(CHARTS) + 2
    assert all(base64.b64decode(s.split(",", 1)[1]).startswith(PNG) for s in sources)
    assert "<h2>Timeline</h2>" in html


def test_console_summary_shows_the_timeline(run_dir: Path) -> None:
    buffer = io.StringIO()
    print_run(load_run(run_dir), Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "timeline 2→8→2 users" in text
    assert "slow timeline 2→8→2 users: p99 4.00 ms (baseline)" in text


def test_timeline_after_closed_loop_stages(tmp_path: Path) -> None:
    scenario = dataclasses.replace(SPIKE, concurrency=(1, 4), stability_windows=1,
                                   max_windows=1)
    run = simulate(tmp_path, scenario)
    fast = next(t for t in run["targets"] if t["name"] == "fast")
    assert [s["mode"] for s in fast["stages"]] == ["closed", "closed", "timeline"]
    md = render_run_dir(tmp_path).markdown.read_text()
    # Peak and decision come from the closed-loop stages, the timeline has its line.
    assert "**fast**: peak 2,000 req/s at 4 users" in md
    assert "only a timeline ran" not in md
    assert "**fast** timeline 2→8→2 users" in md
    assert json.loads((tmp_path / "run.json").read_text())["scenario"]["timeline"][1] == {
        "users": 8, "seconds": 10.0, "label": "burst"}
    # Samples: the timeline is each target's third stage; its warm-up, the measured
    # timeline and the cool-down are told apart by send time.
    samples = read_samples(tmp_path)
    mine = (samples["target"] == "fast") & (samples["stage"] == 2)
    assert set(samples["phase"][mine]) == {"warmup", "measure", "cooldown"}
    assert (samples["phase"][mine] == "measure").sum() == fast["stages"][2]["requests"]


def _raw(scenario: Scenario = SPIKE) -> RawStage:
    job = LoadJob(target="fake", spec=GrowingFake("digits", name="fast", capacity=2,
                                                  service_time_s=0.001).load_spec([]),
                  scenario=scenario, loadgen_cpus=[0], work_dir=Path("unused"),
                  log_path=Path("unused.log"))
    [raw] = SimulatedLoadGenerator().run(job, lambda e: None).stages
    return raw


def test_a_short_segment_is_invalid_and_named() -> None:
    scenario = dataclasses.replace(SPIKE, timeline=(Segment(2, 10, "baseline"),
                                                    Segment(8, 0.2, "blip")))
    stage = summarize_stage(_raw(scenario))
    assert not stage["valid"]
    [reason] = stage["reasons"]
    assert reason.startswith("blip (8 users): too few requests for p99: 400 < 662")
    assert "lengthen its seconds" in reason


def test_every_rule_is_checked_per_segment() -> None:
    raw = _raw()
    assert summarize_stage(raw)["valid"]
    assert raw.timeline is not None
    # Failures in the burst only: its error rate passes the bound, the others' do not.
    burst = raw.timeline["segments"][1]
    in_burst = np.flatnonzero((raw.start_s >= burst["start"]) & (raw.start_s < burst["end"]))
    raw.ok[in_burst[:400]] = False
    burst["loadgen_cpu_percent"] = 97.0
    raw = dataclasses.replace(raw, warmup_complete=False)
    stage = summarize_stage(raw, Rules(max_error_rate=0.01))
    assert not stage["valid"]
    reasons = stage["reasons"]
    assert any(r.startswith("burst (8 users): error rate 2.00%") for r in reasons)
    assert any(r.startswith("burst (8 users): load generator CPU 97.0%") for r in reasons)
    assert any(r.startswith("warm-up incomplete") for r in reasons)
    assert not any(r.startswith(("baseline", "after")) for r in reasons)
    assert not any("unstable" in r for r in reasons)
    assert stage["timeline"]["segments"][1]["errors"] == 400


def test_a_timeline_cut_short_by_a_dying_target_is_invalid() -> None:
    raw = _raw()
    assert raw.timeline is not None
    raw.timeline["segments"] = raw.timeline["segments"][:2]
    end = raw.timeline["segments"][-1]["end"]
    raw = dataclasses.replace(raw, window_end=end, target_died_at=end)
    stage = summarize_stage(raw)
    assert not stage["valid"]
    assert "the timeline stopped after 2 of its 3 segments" in stage["reasons"]
    assert any(r.startswith("the target died") for r in stage["reasons"])
    assert len(stage["timeline"]["series"]) == 20


def test_memory_not_measured_is_said() -> None:
    raw = _raw()
    assert raw.timeline is not None
    for reading in raw.timeline["memory"]:
        reading["rss_mb"] = None
    timeline = summarize_stage(raw)["timeline"]
    assert timeline["memory"]["readings"] == 0
    assert timeline["memory"]["slope_mb_per_min"] is None
    assert "not measured" in timeline["memory"]["note"]
    assert all(p["rss_mb"] is None for p in timeline["series"])


def test_console_shows_a_timeline_stage_it_has_no_users_or_rate_for() -> None:
    """The simulated load generator's timeline stage sends concurrency and rate as None
    (`run --targets fake --scenario spike` used to stop on formatting that None)."""
    observer = ConsoleObserver(Console(file=io.StringIO()))
    observer.target_started("fake", 1, 30.0)
    stage = {"event": "stage", "index": 0, "concurrency": None, "rate": None}
    observer.load_event("fake", {**stage, "phase": "measure"})
    assert observer.progress.tasks[0].fields["phase"] == "measure at the timeline"
    observer.load_event("fake", {**stage, "phase": "done", "requests": 10})
    assert observer.progress.tasks[0].fields["phase"] == "the timeline: 10 requests"
