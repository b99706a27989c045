"""The stage loop every load generator runs: warm-up, measurement windows until they
agree, cool-down and drain, then the stage's record; and the scenario's program of
stages (fixed levels, a sweep, open-loop rates, a timeline).

It knows nothing of Locust or of threads: what generates the load is an :class:`Engine`
(Locust's runner in :mod:`harness.loadgen.driver`, the application's own handler threads in
:mod:`harness.loadgen.embedded`), with its control (what is in flight, the drain flag) and its
recorder (the raw samples). Both drivers run this same code, so a stage means the same
thing whatever drove it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from harness.loadgen import timeline as timeline_stage
from harness.loadgen.analysis.sweep import capacity, stage_figures, sweep_should_stop
from harness.loadgen.analysis.validity import (
    HEADLINE_PERCENTILE,
    Rules,
    measure_window,
    min_requests,
    reasons,
    settled,
    stability,
)
from harness.loadgen.protocol import (
    PARTIAL_FILE,
    Program,
    QuickFigures,
    StageReport,
    TimelinePlan,
)
from harness.loadgen.scrape import StageScraper
from harness.loadgen.stagekit import (
    StageContext,
    StageError,
    StageInterrupted,
    Watch,
    cool_down_and_drain,
    emit,
    save_samples,
    spawn_and_warm_up,
)
from targets.files import atomic_write_json

#: How often a stretched window (window_max_s) checks whether it holds enough answers:
#: often enough that a window overshoots its share by a fraction of a second's answers.
STRETCH_STEP_S = 0.25


def run_program(stages: StageRunner, program: Program, trial: int) -> None:
    """One trial: fixed closed-loop levels, a sweep, open-loop rates, then a timeline."""
    closed = [stages.closed(users, trial).quick() for users in program.levels]
    sweep = program.sweep
    if sweep is not None:
        done: list[QuickFigures] = []
        for users in sweep.levels:
            stage = stages.closed(users, trial, sweep=True)
            done.append(stage.quick())
            stop = sweep_should_stop(done, sweep.min_gain, sweep.patience,
                                     program.slo_p99_ms, program.max_error_rate)
            if stop is not None:
                stages.mark_sweep_stop(stop)
                emit("sweep", reason=stop)
                break
        closed.extend(done)
    for rate in program.rates:
        stages.open(rate, trial)
    if program.fractions:
        found = capacity(closed, program.slo_p99_ms, program.max_error_rate)
        if found is None:
            slo = program.slo_p99_ms
            bound = f"p99 <= {slo:g} ms" if slo is not None else "the objective"
            raise StageError(
                f"no VALID closed-loop stage met {bound} (--slo, else the scenario's, else "
                "the default) and the error bound, so there is no capacity to take "
                "rate_fractions of")
        for fraction in program.fractions:
            stages.open(fraction * found["rps"], trial, fraction=fraction,
                        capacity_rps=found["rps"])
    if program.timeline is not None:
        stages.timeline(program.timeline, trial)


def run_trials(stages: StageRunner, program: Program) -> str | None:
    """Every trial of the program; the error that stopped it early, if one did (the
    stages that ran are kept in ``stages.results``)."""
    try:
        for trial in range(program.trials):
            run_program(stages, program, trial)
    except StageError as exc:
        return str(exc)
    return None


class StageRunner(StageContext):
    """Runs stages one after another with one engine, keeping their results."""

    def closed(self, users: int, trial: int, sweep: bool = False) -> StageReport:
        return self._stage(users, None, trial, {"mode": "closed", "sweep": sweep})

    def open(self, rate: float, trial: int, fraction: float | None = None,
             capacity_rps: float | None = None) -> StageReport:
        t = self.timing
        # The same schedule for the same open stage of every target and run: the seed
        # follows the stage's place among the trial's open-loop stages.
        loop = self.engine.open_loop(
            rate, t.arrival, t.max_inflight,
            seed=t.seed + 1000 * trial + self.open_stages.get(trial, 0))
        self.open_stages[trial] = self.open_stages.get(trial, 0) + 1
        return self._stage(1, loop, trial, {"mode": "open", "rate": rate,
                                            "arrival": t.arrival, "fraction": fraction,
                                            "capacity_rps": capacity_rps})

    def timeline(self, program: TimelinePlan, trial: int) -> StageReport:
        """Segments of users back to back in one run (harness.loadgen.timeline)."""
        return self._stage(program.segments[0].users, None, trial,
                           {"mode": "timeline"}, timeline=program)

    def mark_sweep_stop(self, reason: str) -> None:
        """The last stage is where the sweep stopped, and why."""
        self.results[-1] = dataclasses.replace(self.results[-1], sweep_stop=reason)
        self._write_partial()

    def _write_partial(self) -> None:
        atomic_write_json(self.out_dir / PARTIAL_FILE, {"stages": self.reports()})

    def _stage(self, users: int, loop: Any, trial: int, info: dict[str, Any],
               timeline: TimelinePlan | None = None) -> StageReport:
        if self.stop.is_set():
            raise StageInterrupted
        index = len(self.results)
        label = info.get("rate") if loop is not None else users
        measured = _run_stage(self, index, users, loop, label, timeline)
        ran = {**info, "trial": trial}
        worker_samples = getattr(self.control, "worker_samples", None)
        if worker_samples is not None:  # --loadgen-workers: each worker's own count
            ran["worker_samples"] = worker_samples()
        if loop is not None:
            ran.update(concurrency=None, max_inflight=loop.max_inflight,
                       late_tolerance_ms=self.timing.late_tolerance_ms)
        result = dataclasses.replace(measured, **ran)
        self.results.append(result)
        self._write_partial()
        if result.interrupted:  # kept above, marked; no later stage runs
            raise StageInterrupted
        died = result.target_died_at
        if died is not None:  # kept above, with its failures; no later stage can run
            at = died - (result.stage_started_at or died)
            quick = result.quick()
            raise StageError(
                f"the target's process (PID {', '.join(map(str, result.dead_pids))}) died "
                f"{at:.1f} s into the stage at {_load_label(result)}; "
                f"{quick['requests'] - quick['ok_requests']} of the {quick['requests']} "
                "requests sent in its measured window failed, and no later stage was run")
        return result


def _load_label(result: StageReport) -> str:
    if result.mode == "timeline":
        return "the timeline"
    if result.mode == "open":
        return f"{result.rate or 0:,.0f} req/s"
    users = result.concurrency
    return f"{users} user{'' if users == 1 else 's'}"


def _run_stage(ctx: StageRunner, index: int, users: int, loop: Any, label: Any,
               timeline: TimelinePlan | None = None) -> StageReport:
    """One stage, with the target's main processes watched: a stage in which the target
    died ends after its current window and says when it died. With a metrics URL, the
    target's metrics are scraped just before its users start, every scrape_interval_s
    while it runs and right after its drain (harness.loadgen.scrape): the two edge
    scrapes bracket every sample the stage records, warm-up to drain."""
    ctx.control.reset()
    ctx.recorder.clear()
    ctx.control.open_loop = loop
    where = {"index": index, "concurrency": users if loop is None else None,
             "rate": None if loop is None else label}
    scraper = None if ctx.metrics_url is None else StageScraper(
        ctx.engine, ctx.metrics_url, ctx.timing.scrape_interval_s)
    if scraper is not None:
        scraper.before()
    emit("stage", phase="spawn", **where)
    stage_started_at = time.time()
    watch = Watch(ctx.engine, ctx.meter)
    try:
        if scraper is not None:  # inside: the finally stops its periodic scrapes
            scraper.start()
        if timeline is not None:
            result = timeline_stage.run_stage(ctx, index, timeline, where, watch)
        else:
            result = _run_watched_stage(ctx, index, users, loop, where, watch)
    finally:
        watch.stop()
        if scraper is not None:
            scraper.stop()
    if scraper is not None:  # the drain is over: nothing of this stage is in flight
        scraper.after()
    return dataclasses.replace(result, stage_started_at=stage_started_at,
                               target_died_at=watch.died_at, dead_pids=list(watch.dead),
                               target_metrics=None if scraper is None else scraper.report())


@dataclasses.dataclass
class _Windows:
    """The measurement windows of a stage as they ran: their edges (wall clock), the
    CPU reading at each edge, Locust's cross-check per window, and whether SIGTERM cut
    the last one short."""

    edges: list[float]
    cpu: list[Any]
    windows: list[Any]
    crosscheck: list[Any]
    interrupted: bool = False


def _stretch(ctx: StageRunner, opened: float, cursor: int, watch: Watch) -> None:
    """A window past window_s, up to window_max_s, until it holds its share of the
    requests p99 needs (answers recorded since ``cursor``, a few from the previous window
    among them: close enough to decide when to close it; the window is measured
    exactly after)."""
    t = ctx.timing
    share = math.ceil(min_requests(HEADLINE_PERCENTILE[1]) / t.stability_windows)
    while (len(ctx.recorder) - cursor < share and not ctx.stop.is_set()
           and watch.died_at is None):
        left = opened + t.window_max_s - time.time()
        if left <= 0:
            return
        ctx.stop.wait(min(STRETCH_STEP_S, left))


def _measure_windows(ctx: StageRunner, loop: Any, where: dict[str, Any], watch: Watch
                     ) -> _Windows:
    """Windows until the last few agree (or the scenario's maximum, or the target died).
    At each edge only cheap reads (CPU, a vectorised pass over the samples so far), so
    users are held up as little as possible."""
    engine, control, recorder, meter = ctx.engine, ctx.control, ctx.recorder, ctx.meter
    t, stop = ctx.timing, ctx.stop
    if engine.crosscheck:
        engine.reset_stats()
    ran = _Windows(edges=[time.time()], cpu=[meter.cpu()], windows=[], crosscheck=[])
    edges, windows = ran.edges, ran.windows
    # Open loop: the schedule sets the throughput, so only latency must settle.
    check_rps = loop is None
    # Samples are appended as answers arrive, so a window's completions are among those
    # appended since the previous edge (and a few just before it): scan only those.
    cursor = len(recorder)
    flush_delay = float(getattr(control, "flush_delay_s", 0.0))
    while True:
        emit("stage", phase="measure", window=len(windows) + 1, of=t.max_windows, **where)
        stop.wait(max(0.0, edges[-1] + t.window_s - time.time()))
        _stretch(ctx, edges[-1], cursor, watch)
        edges.append(time.time())
        ran.cpu.append(meter.cpu())
        if engine.crosscheck:
            ran.crosscheck.append(engine.window_stats())
            engine.reset_stats()
        begin = recorder.scan_start(cursor)
        if flush_delay:  # workers: let their pushes of the window's answers arrive
            engine.sleep(flush_delay)
            begin = 0
        recorder.settle()
        cursor = len(recorder)
        scan = recorder.columns(begin, cursor)
        windows.append(measure_window(scan.start_s, scan.latency_ms, scan.ok,
                                      edges[-2], edges[-1]))
        del scan
        # SIGTERM during a window closes it at once: the windows so far are kept, the
        # last one shorter, and the stage is marked interrupted.
        if stop.is_set():
            ran.interrupted = True
            return ran
        if settled(windows, t.stability_windows, t.stability_tolerance, check_rps) \
                or len(windows) >= t.max_windows or watch.died_at is not None:
            return ran


def _quick_figures(ctx: StageRunner, samples: Any, window_start: float, window_end: float,
                   loadgen_percent: float, stable: bool, warmed: bool) -> QuickFigures:
    """The window's figures with the verdict's closed-loop rules, so a sweep's capacity
    comes from a VALID stage (the report recomputes the full verdict from the samples)."""
    figures = stage_figures(samples.start_s, samples.latency_ms, samples.ok,
                            window_start, window_end)
    rules = Rules(max_error_rate=ctx.timing.max_error_rate)
    figures["valid"] = not reasons(
        requests=figures["requests"], ok_requests=figures["ok_requests"],
        error_rate=figures["error_rate"], loadgen_cpu_percent=loadgen_percent, stable=stable,
        instability=None, late=0, late_tolerance_ms=None, queued=0, max_inflight=None,
        warmup_complete=warmed, rules=rules)
    figures["loadgen_busy"] = loadgen_percent > rules.loadgen_cpu_limit_percent
    return figures


def _run_watched_stage(ctx: StageRunner, index: int, users: int, loop: Any,
                       where: dict[str, Any], watch: Watch) -> StageReport:
    engine, control, recorder, meter = ctx.engine, ctx.control, ctx.recorder, ctx.meter
    t, stop = ctx.timing, ctx.stop
    warmup_s, warmed = spawn_and_warm_up(ctx, users, where, watch)
    # The target's processes as they are now: after the warm-up, so environments a
    # serverless target started for this stage's users are counted (a few ms, before the
    # window opens).
    meter.attach()
    ran = _measure_windows(ctx, loop, where, watch)
    windows, edges, cpu, interrupted = ran.windows, ran.edges, ran.cpu, ran.interrupted
    count, tolerance = t.stability_windows, t.stability_tolerance
    if interrupted and not any(w.completed for w in windows):
        raise StageInterrupted  # no answer measured: nothing to keep
    # Whether the windows agreed, apart from whether they held enough requests (which
    # the verdict judges on its own): a stage is unstable only when they disagreed. An
    # interrupted stage is not judged (its verdict says it was interrupted).
    stable, instability = (False, f"not judged: interrupted after {len(windows)} "
                                  "window(s)") if interrupted \
        else stability(windows, count, tolerance, loop is None)
    kept = min(count, len(windows))
    window_start, window_end = edges[-1 - kept], edges[-1]
    cpu_before, cpu_after = cpu[-1 - kept], cpu[-1]
    crosscheck = engine.merged_stats(ran.crosscheck[-kept:], window_end - window_start) \
        if engine.crosscheck else {}

    drained, unanswered = cool_down_and_drain(ctx, where)
    # Interrupted in the cool-down or drain: no cool-down, a short drain, so requests of
    # the window may have been cut; the stage says so rather than pass as finished.
    interrupted = interrupted or stop.is_set()
    truncated = sum(window_start <= sent_at < window_end for sent_at in unanswered)
    unsent = loop.unsent(window_start, window_end) if loop is not None else 0
    # Everything sent in the window is answered (or given up on): slow reads are safe.
    memory = meter.memory()
    tree_changed = meter.tree_changed()
    if loop is not None:
        loop.stop()
    engine.stop()
    control.open_loop = None

    samples = recorder.columns()
    wall = window_end - window_start
    loadgen_percent = cpu_after.loadgen_percent(cpu_before, wall, ctx.loadgen_cores)
    figures = _quick_figures(ctx, samples, window_start, window_end, loadgen_percent, stable,
                             warmed)
    # A target elsewhere (--endpoint) has no CPU figure here: absent, not zero.
    target_cpu_s = cpu_after.target_since(cpu_before) if meter.measures_target else None
    samples_name = save_samples(ctx, index, samples)
    emit("stage", phase="done", requests=len(samples.ok), stable=stable,
         interrupted=interrupted, **where)
    return StageReport(
        concurrency=users, window_start=window_start, window_end=window_end,
        windows=[w.to_json() for w in windows], windows_kept=kept, stable=stable,
        instability=instability, interrupted=interrupted, drained=drained,
        warmup_s=warmup_s, warmup_complete=warmed, truncated=truncated,
        unanswered=len(unanswered), unsent=unsent, target_cpu_s=target_cpu_s,
        target_cpu_percent=None if target_cpu_s is None
        else 100.0 * target_cpu_s / (wall * ctx.target_cpus),
        # Every load-generator process's CPU, workers elsewhere included: per request.
        loadgen_cpu_s=(cpu_after.loadgen_s + cpu_after.remote_s
                       - cpu_before.loadgen_s - cpu_before.remote_s),
        # Of one core: Locust's event loop is one thread, so this is its ceiling whatever
        # CPUs the process may use.
        loadgen_cpu_percent=loadgen_percent,
        target_rss_mb=memory.rss_mb, target_pss_mb=memory.pss_mb,
        target_peak_rss_mb=memory.peak_rss_mb, target_processes_changed=tree_changed,
        locust=crosscheck, error_kinds=dict(recorder.error_kinds), samples=samples_name,
        # The driver's own quick figures, for sweeps; the report recomputes them.
        figures=figures,
    )


