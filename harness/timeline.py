"""A timeline stage: segments of closed-loop users run back to back in one Locust run.

The ``spike`` and ``soak`` scenarios are timelines. Unlike the other stages a timeline
is a transient by design: the number of users changes at once at each segment's edge,
with no warm-up or drain in between (a warm-up at the first segment's users comes before
the timeline, a cool-down and drain after it, as for every stage). No stability rule
applies; what is judged instead is each segment on its own (enough requests for its p99,
its error rate, the load generator's CPU), the warm-up, and that the target stayed alive.

Three parts, each used where the rest of its kind lives:

* :func:`run_stage` runs in the load generator's process (called by
  :mod:`harness.stages`, built of :mod:`harness.stagekit`, with Locust or the in-process
  handler threads as its engine): it moves the users from segment to segment, reads CPU
  at each edge and the target's RSS
  every ``sample_s`` (the cheap read, :meth:`harness.resources.ResourceMeter.rss_mb`).
* :func:`simulate` is the same stage for the fake target
  (:class:`harness.loadgen.SimulatedLoadGenerator`), exactly and without time passing.
* :func:`summarize` turns the raw samples into each segment's figures, the series and the
  memory growth, and the verdict's reasons (:func:`harness.stats.summarize_stage`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.latency import nearest_rank, summarize_latency
from harness.protocol import RawStage, Segment, TimelinePlan, points
from harness.stagekit import (
    StageContext,
    Watch,
    cool_down_and_drain,
    emit,
    save_samples,
    spawn_and_warm_up,
)
from harness.sweep import stage_figures
from harness.validity import Rules, reasons
from reports.stageblocks import MemoryGrowth, TimelineBlock, TimelinePoint, TimelineSegment

if TYPE_CHECKING:
    from scenarios.catalogue import Scenario

#: Why a timeline has no stability verdict: said in run.json and in the report.
NO_STABILITY = ("not applied: a timeline changes its load on purpose, so its windows are "
                "not expected to agree; each segment is judged on its own")
#: How often a segment's wait looks whether the target died (harness.driver.Watch checks
#: the processes every 0.1 s).
WATCH_STEP_S = 0.05


# -- in the load generator's process -----------------------------------------------------

def run_stage(ctx: StageContext, index: int, program: TimelinePlan, where: dict[str, Any],
              watch: Watch) -> dict[str, Any]:
    """The timeline in the driver, as :func:`harness.stages._run_watched_stage` runs the
    other stages: spawn and warm up, then the segments, then cool down and drain."""

    engine = ctx.engine
    segments = program.segments
    # Users leaving at a ramp-down finish the request they are in (Locust would kill them
    # mid-request, dropping exactly the slowest requests of a burst): they stop gracefully,
    # waiting at most the drain timeout.
    engine.reserve(max(segment.users for segment in segments))
    with engine.graceful(ctx.timing.drain_timeout_s):
        warmup_s, warmed = spawn_and_warm_up(ctx, segments[0].users, where, watch,
                                             what="the timeline's users")
        ctx.meter.attach()
        if engine.crosscheck:
            engine.reset_stats()
        ran, edges, cpu, memory = _segments(ctx, index, segments, program.sample_s, watch)
        crosscheck = engine.total_stats(edges[-1] - edges[0]) if engine.crosscheck else {}
        tail = _cool_down_and_drain(ctx, where, edges[0], edges[-1])
        interrupted = ctx.stop.is_set()


    recorder = ctx.recorder
    window_start, window_end = edges[0], edges[-1]
    samples = recorder.columns()
    figures = stage_figures(samples.start_s, samples.latency_ms, samples.ok,
                            window_start, window_end)
    wall = window_end - window_start
    measures = ctx.meter.measures_target
    for seg, before, after, a, b in zip(ran, cpu[:-1], cpu[1:], edges[:-1], edges[1:],
                                        strict=True):
        seg["start"], seg["end"] = a, b
        seg["loadgen_cpu_percent"] = after.loadgen_percent(before, b - a, ctx.loadgen_cores)
        seg["target_cpu_percent"] = (100.0 * after.target_since(before)
                                     / ((b - a) * ctx.target_cpus)) \
            if measures and b > a else None
    target_cpu_s = cpu[-1].target_since(cpu[0]) if measures else None
    samples_name = save_samples(ctx, index, samples)
    emit("stage", phase="done", requests=len(samples.ok), stable=True, **where)
    return {
        "concurrency": None,
        "window_start": window_start,
        "window_end": window_end,
        "windows": [],
        "windows_kept": 0,
        # No stability rule applies (NO_STABILITY): nothing here is unstable.
        "stable": True,
        "instability": None,
        "warmup_s": warmup_s,
        "warmup_complete": warmed,
        "target_cpu_s": target_cpu_s,
        "target_cpu_percent": None if target_cpu_s is None or wall <= 0
        else 100.0 * target_cpu_s / (wall * ctx.target_cpus),
        "loadgen_cpu_s": (cpu[-1].loadgen_s + cpu[-1].remote_s
                          - cpu[0].loadgen_s - cpu[0].remote_s),
        "loadgen_cpu_percent": cpu[-1].loadgen_percent(cpu[0], wall, ctx.loadgen_cores),
        "locust": crosscheck,
        "error_kinds": dict(recorder.error_kinds),
        "samples": samples_name,
        "timeline": {"sample_s": program.sample_s, "segments": ran, "memory": memory,
                     "planned_segments": len(segments)},
        "interrupted": interrupted,
        **tail,
        **figures,
    }


def _segments(ctx: StageContext, index: int, segments: tuple[Segment, ...], sample_s: float,
              watch: Watch) -> tuple[list[dict[str, Any]], list[float], list[Any],
                                     list[dict[str, Any]]]:
    """Run the segments on a fixed schedule from the first edge (so the timeline does not
    drift by what each edge's spawn takes); the RSS is read every sample_s meanwhile."""
    engine, meter = ctx.engine, ctx.meter
    read_rss = getattr(meter, "rss_mb", None)
    memory: list[dict[str, Any]] = []

    def reading() -> None:
        memory.append({"t": time.time(), "rss_mb": read_rss() if read_rss else None,
                       "users": engine.user_count})

    origin = time.time()
    edges, cpu = [origin], [meter.cpu()]

    def sample() -> None:
        k = 0
        while True:
            reading()
            k += 1
            engine.sleep(max(0.0, origin + k * sample_s - time.time()))

    sampler = engine.spawn(sample)
    ran: list[dict[str, Any]] = []
    due = origin
    try:
        for i, seg in enumerate(segments):
            if i:
                engine.start(seg.users, all_at_once=True)
            ran.append({"users": seg.users, "seconds": seg.seconds, "label": seg.label})
            emit("stage", phase="measure", index=index, concurrency=seg.users, rate=None,
                 segment=i + 1, of=len(segments), label=seg.label)
            due += seg.seconds
            # To the edge exactly, looking for the target's death every WATCH_STEP_S;
            # SIGTERM (ctx.stop) cuts the segment short.
            while watch.died_at is None and time.time() < due:
                if ctx.stop.wait(min(WATCH_STEP_S, max(0.0, due - time.time()))):
                    break
            edges.append(time.time())
            cpu.append(meter.cpu())
            if watch.died_at is not None or ctx.stop.is_set():
                break  # the target died or the run was interrupted: the timeline ends
                # here (the verdict says so)
    finally:
        sampler.kill()
    reading()  # the end of the measured timeline
    return ran, edges, cpu, memory


def _cool_down_and_drain(ctx: StageContext, where: dict[str, Any], window_start: float,
                         window_end: float) -> dict[str, Any]:

    meter = ctx.meter
    drained, unanswered = cool_down_and_drain(ctx, where)
    memory = meter.memory()  # the slow read (PSS), once everything is answered
    tree_changed = meter.tree_changed()
    ctx.engine.stop()
    return {
        "drained": drained,
        "truncated": sum(window_start <= sent_at < window_end for sent_at in unanswered),
        "unanswered": len(unanswered),
        "unsent": 0,
        "target_rss_mb": memory.rss_mb,
        "target_pss_mb": memory.pss_mb,
        "target_peak_rss_mb": memory.peak_rss_mb,
        "target_processes_changed": tree_changed,
    }


# -- the fake target's simulation --------------------------------------------------------

def simulate(program: TimelinePlan, scenario: Scenario, spec: dict[str, Any],
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


# -- statistics from the raw samples -----------------------------------------------------

def summarize(raw: RawStage, rules: Rules) -> tuple[TimelineBlock, list[str]]:
    """The timeline block of a stage's result, and why the stage is INVALID (empty: it
    is VALID). Segments take the requests *sent* in them (as every stage's window does);
    the series takes those *completed* in each interval (as a measurement window does,
    and as a monitoring dashboard would show them)."""

    assert raw.timeline is not None
    tl = raw.timeline
    ok, cold = raw.ok, raw.cold_flags()
    segments: list[TimelineSegment] = []
    why: list[str] = []
    for i, seg in enumerate(tl["segments"]):
        sent = (raw.start_s >= seg["start"]) & (raw.start_s < seg["end"])
        good = sent & ok
        n, n_ok = int(sent.sum()), int(good.sum())
        span = seg["end"] - seg["start"]
        lat = summarize_latency(raw.latency_ms[good])
        error_rate = (n - n_ok) / n if n else 0.0
        name = f"{seg['label'] or f'segment {i + 1}'} ({seg['users']} users)"
        segments.append({
            "label": seg["label"], "users": seg["users"], "seconds": seg["seconds"],
            "start_s": seg["start"] - raw.window_start, "duration_s": span,
            "requests": n, "ok": n_ok, "errors": n - n_ok, "error_rate": error_rate,
            "rps": n_ok / span if span > 0 else 0.0,
            "p50_ms": lat["p50"] if lat else None, "p99_ms": lat["p99"] if lat else None,
            "max_ms": lat["max"] if lat else None,
            # Requests the target marked as cold starts (Lambda: a new environment).
            "cold_requests": int((cold & good).sum()),
            "loadgen_cpu_percent": seg.get("loadgen_cpu_percent"),
            "target_cpu_percent": seg.get("target_cpu_percent"),
        })
        # The rules every stage's window meets, per segment; a segment's remedy is its
        # own length, not window_s.
        found = reasons(requests=n, ok_requests=n_ok, error_rate=error_rate,
                        loadgen_cpu_percent=seg.get("loadgen_cpu_percent"), stable=True,
                        instability=None, late=0, late_tolerance_ms=None, queued=0,
                        max_inflight=None, warmup_complete=True, rules=rules)
        why += [f"{name}: " + r.replace("lengthen window_s", "lengthen its seconds")
                for r in found]
    planned = int(tl.get("planned_segments", len(segments)))
    if len(segments) < planned:
        why.append(f"the timeline stopped after {len(segments)} of its {planned} segments")
    if not raw.warmup_complete:
        why.append("warm-up incomplete: not every user had an answer within warmup_max_s, "
                   "so fewer users than planned were sending")
    # Read over the measured timeline only: every sample_s from its start, and at its end.
    memory: list[dict[str, Any]] = tl.get("memory", [])
    return {
        "sample_s": tl["sample_s"],
        "stability": NO_STABILITY,
        "segments": segments,
        "series": _series(raw, float(tl["sample_s"]), memory),
        "memory": _growth(memory, raw.window_start),
    }, why


def _series(raw: RawStage, sample_s: float, memory: list[dict[str, Any]]
            ) -> list[TimelinePoint]:
    """One point per sample_s of the measured timeline: t is its end, in seconds from
    the timeline's start; users those of the segment at its middle (an edge falls a
    moment after the planned second); rss_mb the reading at its end (None where none
    was taken)."""

    done = raw.start_s + raw.latency_ms / 1000.0
    order = np.argsort(done, kind="stable")
    done, ok = done[order], raw.ok[order]
    latency, cold = raw.latency_ms[order], raw.cold_flags()[order]
    count = points(raw.window_end - raw.window_start, sample_s)
    edges = [raw.window_start + k * sample_s for k in range(count)] + [raw.window_end]
    cuts = np.searchsorted(done, edges, side="left")
    segments = raw.timeline["segments"] if raw.timeline else []
    readings = [(m["t"], m["rss_mb"]) for m in memory if m.get("rss_mb") is not None]
    out: list[TimelinePoint] = []
    for k in range(count):
        a, b = edges[k], edges[k + 1]
        sl = slice(int(cuts[k]), int(cuts[k + 1]))
        good = ok[sl]
        lat = np.sort(latency[sl][good])
        mid = (a + b) / 2
        users = next((s["users"] for s in segments if s["start"] <= mid < s["end"]),
                     segments[-1]["users"] if segments else None)
        # The reading nearest the point's end, within half an interval.
        near = min(readings, key=lambda r: abs(r[0] - b), default=None)
        rss = near[1] if near is not None and abs(near[0] - b) <= sample_s / 2 + 1e-6 \
            else None
        out.append({
            "t": b - raw.window_start, "users": users,
            "rps": float(good.sum()) / (b - a) if b > a else 0.0,
            "p50_ms": nearest_rank(lat, 0.5) if len(lat) else None,
            "p99_ms": nearest_rank(lat, 0.99) if len(lat) else None,
            "errors": int((~good).sum()), "cold": int((cold[sl] & good).sum()),
            "rss_mb": rss,
        })
    return out


def _growth(memory: list[dict[str, Any]], origin: float) -> MemoryGrowth:
    """RSS at the start and end of the measured timeline, and its least-squares slope."""
    points = [(m["t"], float(m["rss_mb"])) for m in memory if m.get("rss_mb") is not None]
    if not points:
        return {"readings": 0, "start_mb": None, "end_mb": None, "growth_mb": None,
                "slope_mb_per_min": None, "peak_mb": None,
                "note": "not measured: the target's processes are not on this machine"}
    t = np.array([(p[0] - origin) / 60.0 for p in points])
    rss = np.array([p[1] for p in points])
    slope = None
    if len(points) >= 2 and np.ptp(t) > 0:
        # A flat series is exactly flat (polyfit's rounding would say -2e-13).
        slope = float(np.polyfit(t, rss, 1)[0]) if np.ptp(rss) > 0 else 0.0
    return {"readings": len(points), "start_mb": float(rss[0]), "end_mb": float(rss[-1]),
            "growth_mb": float(rss[-1] - rss[0]), "slope_mb_per_min": slope,
            "peak_mb": float(rss.max())}
