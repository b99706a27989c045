"""The load generator of the fake target, simulated exactly and without time passing.

``capacity`` servers with a fixed ``service_time_s``. Closed loop, N users with no think
time: throughput is min(N, capacity) / service time and each request waits
max(1, N / capacity) service times (Little's law). Open loop at rate R: answered in one
service time while R is below capacity / service time; above it every arrival waits for
a slot (``queued``) and latency grows with the overload. ``window_noise`` in the spec
scripts each successive measurement window's throughput and p50 as multipliers, so the
stability rule decides the windows as it does in the real driver. A timeline stage is
simulated segment by segment (:func:`simulate_timeline`). Nothing is random and no time
passes, so statistics and reports can be tested exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.loadgen.analysis.sweep import capacity, sweep_should_stop
from harness.loadgen.analysis.validity import (
    HEADLINE_PERCENTILE,
    Window,
    min_requests,
    settled,
    stability,
)
from harness.loadgen.launch import EventSink, LoadGeneratorError, LoadJob, LoadResult
from harness.loadgen.protocol import Program, RawStage, TimelinePlan, points
from scenarios.catalogue import Scenario

#: An arbitrary, fixed epoch for the first stage: results are reproducible.
EPOCH = 1_000_000.0


class SimulatedLoadGenerator:
    """A deterministic simulation of a fake target, for unit tests (see the module)."""

    def run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        if job.spec.get("protocol") != "simulated":
            raise LoadGeneratorError(f"the simulated load generator cannot drive {job.target}")
        sim = _Simulation(job, on_event)
        program = Program.from_scenario(job.scenario, job.trials, job.slo_p99_ms)
        for trial in range(job.trials):
            closed = [_figures(sim.stage(n, None, trial)) for n in program.levels]
            closed.extend(sim.sweep(program, trial))
            for rate in program.rates:
                sim.stage(None, rate, trial)
            found = capacity(closed, job.slo_p99_ms, job.scenario.max_error_rate)
            if found:
                rps = float(found["rps"])
                for fraction in program.fractions:
                    sim.stage(None, fraction * rps, trial, fraction=fraction, capacity_rps=rps)
            if program.timeline is not None:
                sim.timeline(program.timeline, trial)
        return LoadResult(sim.stages, {"simulated": True})


def _figures(raw: RawStage) -> dict[str, Any]:
    """The quick figures the sweep's stopping rule and the capacity read."""
    enough = raw.locust["requests"] >= min_requests(HEADLINE_PERCENTILE[1])
    return {"rps": float(raw.locust.get("rps") or 0.0), "p99_ms": float(raw.latency_ms[0]),
            "error_rate": 0.0, "valid": raw.stable and enough}


class _Simulation:
    """One job's simulated stages, on a clock that moves only as stages are added."""

    def __init__(self, job: LoadJob, on_event: EventSink) -> None:
        self.job, self.scenario, self.on_event = job, job.scenario, on_event
        self.service = float(job.spec["service_time_s"])
        self.servers = int(job.spec["capacity"])
        self.noise: Iterator[float] = iter(
            [float(m) for m in job.spec.get("window_noise", [])])  # type: ignore[attr-defined]
        self.stages: list[RawStage] = []
        self.clock = EPOCH

    def sweep(self, program: Program, trial: int) -> list[dict[str, Any]]:
        """The adaptive sweep's steps until its stopping rule says stop."""
        sweep = program.sweep
        done: list[dict[str, Any]] = []
        if sweep is None:
            return done
        for n in sweep.levels:
            done.append(_figures(self.stage(n, None, trial, sweep=True)))
            stop = sweep_should_stop(done, sweep.min_gain, sweep.patience,
                                     self.job.slo_p99_ms, self.scenario.max_error_rate)
            if stop is not None:
                self.stages[-1] = dataclasses.replace(self.stages[-1], sweep_stop=stop)
                break
        return done

    def _rate_and_latency(self, users: int | None, rate_in: float | None
                          ) -> tuple[float, float, bool]:
        """Throughput (req/s), each request's latency (ms), and whether arrivals queue."""
        if users is not None:
            rate = min(users, self.servers) / self.service
            return rate, self.service * max(1.0, users / self.servers) * 1000.0, False
        assert rate_in is not None
        limit = self.servers / self.service
        queued = rate_in > limit
        return (min(rate_in, limit),
                self.service * 1000.0 * (rate_in / limit if queued else 1.0), queued)

    def _windows(self, rate: float, latency_ms: float, closed: bool) -> list[Window]:
        """Measurement windows until they agree (or the scenario's maximum)."""
        sc = self.scenario
        windows: list[Window] = []
        start = self.clock + sc.warmup_s
        while True:
            m = next(self.noise, 1.0)
            # As the real one: past window_s, up to window_max_s, until the window holds
            # its share of the requests p99 needs.
            share = math.ceil(min_requests(HEADLINE_PERCENTILE[1]) / sc.stability_windows)
            length = min(sc.longest_window_s, max(sc.window_s, share / (rate * m)))
            w = Window(start, start + length, round(rate * m * length), rate * m,
                       latency_ms * m, latency_ms * m)
            windows.append(w)
            start = w.end
            if settled(windows, sc.stability_windows, sc.stability_tolerance,
                       check_rps=closed) or len(windows) >= sc.max_windows:
                return windows

    def stage(self, users: int | None, rate_in: float | None, trial: int, **info: Any
              ) -> RawStage:
        """One closed-loop (``users``) or open-loop (``rate_in``) stage."""
        sc = self.scenario
        index = len(self.stages)
        self.on_event({"event": "stage", "index": index, "phase": "measure",
                       "concurrency": users, "rate": rate_in})
        closed = users is not None
        rate, latency_ms, queued = self._rate_and_latency(users, rate_in)
        windows = self._windows(rate, latency_ms, closed)
        # Whether the windows agreed, apart from whether they held enough requests.
        stable, instability = stability(windows, sc.stability_windows, sc.stability_tolerance,
                                        check_rps=closed)
        kept = min(sc.stability_windows, len(windows))
        window_start, window_end = windows[-kept].start, windows[-1].end
        stop = window_end + sc.cooldown_s
        n = round(rate * (stop - self.clock))
        span = window_end - window_start
        ok_in_window = round(rate * span)
        raw = RawStage(
            concurrency=users, window_start=window_start, window_end=window_end,
            start_s=self.clock + np.arange(n) / rate, latency_ms=np.full(n, latency_ms),
            ok=np.ones(n, dtype=bool), truncated=0, unanswered=0,
            target_cpu_percent=100.0 * rate * self.service / self.servers,
            target_cpu_s=self.service * rate * span,
            loadgen_cpu_percent=10.0, loadgen_cpu_s=0.1 * span,
            target_rss_mb=100.0, target_pss_mb=90.0, target_peak_rss_mb=110.0,
            locust={"requests": ok_in_window, "failures": 0, "rps": ok_in_window / span},
            mode="closed" if closed else "open", rate=rate_in,
            arrival=None if closed else sc.arrival,
            max_inflight=None if closed else sc.max_inflight,
            late_tolerance_ms=None if closed else sc.late_tolerance_ms,
            send_delay_ms=np.zeros(n), queued=np.full(n, queued), trial=trial,
            windows=[w.to_json() for w in windows], windows_kept=kept, stable=stable,
            instability=instability,
            **info,
        )
        self.stages.append(raw)
        self.on_event({"event": "stage", "index": index, "phase": "done",
                       "concurrency": users, "requests": n})
        self.clock = stop + 1.0
        return raw

    def timeline(self, program: TimelinePlan, trial: int) -> None:
        index = len(self.stages)
        self.on_event({"event": "stage", "index": index, "phase": "measure",
                       "concurrency": None, "rate": None})
        raw = simulate_timeline(program, self.scenario, dict(self.job.spec), self.clock, trial)
        self.stages.append(raw)
        self.on_event({"event": "stage", "index": index, "phase": "done",
                       "concurrency": None, "requests": len(raw.ok)})
        self.clock = raw.window_end + self.scenario.cooldown_s + 1.0


def simulate_timeline(program: TimelinePlan, scenario: Scenario, spec: dict[str, Any],
             start: float, trial: int) -> RawStage:
    """The timeline against ``capacity`` servers of a fixed ``service_time_s`` (the model
    of :class:`harness.loadgen.SimulatedLoadGenerator`): each segment at its own steady
    state from its first instant. Optional spec keys: ``rss_mb`` and
    ``rss_growth_mb_per_min`` (the memory series), ``cold_on_scale_out`` (a new user's
    first request is a cold start, as on Lambda)."""
    service = float(spec["service_time_s"])
    servers = int(spec["capacity"])
    rss0 = float(spec.get("rss_mb", 100.0))
    growth = float(spec.get("rss_growth_mb_per_min", 0.0))
    cold_on_scale_out = bool(spec.get("cold_on_scale_out", False))
    segments = program.segments
    sample_s = float(program.sample_s)
    pieces = [(segments[0].users, scenario.warmup_s),
              *((s.users, float(s.seconds)) for s in segments),
              (segments[-1].users, scenario.cooldown_s)]
    starts: list[np.ndarray] = []
    latencies: list[np.ndarray] = []
    colds: list[np.ndarray] = []
    ran: list[dict[str, Any]] = []
    clock, before = start, 0
    for k, (users, seconds) in enumerate(pieces):
        rate = min(users, servers) / service
        n = round(rate * seconds)
        starts.append(clock + np.arange(n) / rate)
        latencies.append(np.full(n, service * max(1.0, users / servers) * 1000.0))
        cold = np.zeros(n, dtype=bool)
        if cold_on_scale_out:
            cold[:max(0, min(n, users - before))] = True
        colds.append(cold)
        if 0 < k < len(pieces) - 1:
            seg = segments[k - 1]
            ran.append({"users": users, "seconds": seconds, "label": seg.label,
                        "start": clock, "end": clock + seconds, "loadgen_cpu_percent": 10.0,
                        "target_cpu_percent": 100.0 * rate * service / servers})
        clock += seconds
        before = users
    window_start, window_end = ran[0]["start"], ran[-1]["end"]
    times = [*(window_start + k * sample_s
               for k in range(points(window_end - window_start, sample_s))), window_end]

    def users_at(t: float) -> int:
        return int(next((s["users"] for s in ran if s["start"] <= t < s["end"]),
                        ran[-1]["users"]))

    memory = [{"t": t, "rss_mb": rss0 + growth * (t - window_start) / 60.0,
               "users": users_at(t)} for t in times]
    start_s = np.concatenate(starts)
    n = len(start_s)
    in_window = int(((start_s >= window_start) & (start_s < window_end)).sum())
    span = window_end - window_start
    return RawStage(
        concurrency=None, window_start=window_start, window_end=window_end,
        start_s=start_s, latency_ms=np.concatenate(latencies), ok=np.ones(n, dtype=bool),
        truncated=0, unanswered=0, target_cpu_percent=None, target_cpu_s=None,
        loadgen_cpu_percent=10.0, loadgen_cpu_s=0.1 * span,
        target_rss_mb=memory[-1]["rss_mb"], target_pss_mb=None,
        target_peak_rss_mb=max(m["rss_mb"] for m in memory),
        locust={"requests": in_window, "failures": 0, "rps": in_window / span},
        warmup_s=scenario.warmup_s, cold=np.concatenate(colds), mode="timeline",
        trial=trial, windows=[], windows_kept=0, stable=True,
        timeline={"sample_s": sample_s, "segments": ran, "memory": memory,
                  "planned_segments": len(segments)},
    )
