"""A timeline stage: segments of closed-loop users run back to back in one Locust run.

The ``spike`` and ``soak`` scenarios are timelines. Unlike the other stages a timeline
is a transient by design: the number of users changes at once at each segment's edge,
with no warm-up or drain in between (a warm-up at the first segment's users comes before
the timeline, a cool-down and drain after it, as for every stage). No stability rule
applies; what is judged instead is each segment on its own (enough requests for its p99,
its error rate, the load generator's CPU), the warm-up, and that the target stayed alive.

:func:`run_stage` runs in the load generator's process (called by
:mod:`harness.loadgen.stages`, built of :mod:`harness.loadgen.stagekit`, with Locust or the
in-process handler threads as its engine): it moves the users from segment to segment,
reads CPU at each edge and the target's RSS every ``sample_s`` (the cheap read,
:meth:`harness.loadgen.resources.ResourceMeter.rss_mb`). The same stage for the fake
target is :func:`harness.loadgen.simulated.simulate_timeline`; its figures are
:func:`harness.loadgen.analysis.timeline.summarize`'s.
"""

from __future__ import annotations

import time
from typing import Any

from harness.loadgen.analysis.sweep import stage_figures
from harness.loadgen.protocol import Segment, StageReport, TimelinePlan
from harness.loadgen.stagekit import (
    StageContext,
    Watch,
    cool_down_and_drain,
    emit,
    save_samples,
    spawn_and_warm_up,
)

#: How often a segment's wait looks whether the target died (stagekit's Watch checks
#: the processes every 0.1 s).
WATCH_STEP_S = 0.05


def run_stage(ctx: StageContext, index: int, program: TimelinePlan, where: dict[str, Any],
              watch: Watch) -> StageReport:
    """The timeline in the driver, as :func:`harness.loadgen.stages._run_watched_stage` runs the
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
    return StageReport(
        mode="timeline", concurrency=None, window_start=window_start, window_end=window_end,
        # No stability rule applies (analysis.timeline.NO_STABILITY): nothing is unstable.
        windows=[], windows_kept=0, stable=True, instability=None,
        warmup_s=warmup_s, warmup_complete=warmed, target_cpu_s=target_cpu_s,
        target_cpu_percent=None if target_cpu_s is None or wall <= 0
        else 100.0 * target_cpu_s / (wall * ctx.target_cpus),
        loadgen_cpu_s=(cpu[-1].loadgen_s + cpu[-1].remote_s
                       - cpu[0].loadgen_s - cpu[0].remote_s),
        loadgen_cpu_percent=cpu[-1].loadgen_percent(cpu[0], wall, ctx.loadgen_cores),
        locust=crosscheck, error_kinds=dict(recorder.error_kinds), samples=samples_name,
        timeline={"sample_s": program.sample_s, "segments": ran, "memory": memory,
                  "planned_segments": len(segments)},
        interrupted=interrupted, figures=figures, **tail,
    )


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
