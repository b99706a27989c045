"""The stage loop every load generator runs: warm-up, measurement windows until they
agree, cool-down and drain, then the stage's record; and the scenario's program of
stages (fixed levels, a sweep, open-loop rates, a timeline).

It knows nothing of Locust or of threads: what generates the load is an :class:`Engine`
(Locust's runner in :mod:`harness.driver`, the application's own handler threads in
:mod:`harness.embedded`), with its control (what is in flight, the drain flag) and its
recorder (the raw samples). Both drivers run this same code, so a stage means the same
thing whatever drove it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from targets.files import atomic_write_json

#: How long all of a stage's users may take to start before the stage is failed.
SPAWN_TIMEOUT_S = 60.0
#: How often the target's main processes are checked for life during a stage.
WATCH_INTERVAL_S = 0.1
#: The stages measured so far, rewritten after each: what is left if the driver dies
#: (harness.loadgen reads it).
PARTIAL_FILE = "partial.json"
EXIT_PARITY = 3
#: After SIGTERM (the orchestrator stopping the run), how long the interrupted stage waits
#: for the requests still in flight: the orchestrator kills the driver soon after.
INTERRUPTED_DRAIN_S = 1.0
#: After SIGTERM, the driver exits by itself within this long, whatever it is doing
#: (within harness.loadgen.DRIVER_STOP_GRACE_S, after which the orchestrator kills it).
HARD_EXIT_S = 8


class StageError(RuntimeError):
    """A stage could not run as planned (e.g. not every user started)."""


class StageInterrupted(StageError):
    """SIGTERM: the run is being stopped. The stage under way ended at once, its
    measurement so far kept (marked ``interrupted``) when it had begun measuring."""

    def __init__(self) -> None:
        super().__init__("interrupted: the load generator was stopped (SIGTERM)")


def emit(event: str, **fields: Any) -> None:
    """One progress line for the orchestrator (harness.loadgen reads stdout)."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Waitable(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...
    def set(self) -> None: ...
    def is_set(self) -> bool: ...


class Task(Protocol):
    def kill(self) -> None: ...


class Engine(Protocol):
    """What generates the load, as the stage loop drives it."""

    #: Keep the engine's own statistics per window as a cross-check of ours.
    crosscheck: bool

    def start(self, users: int, all_at_once: bool = False) -> None:
        """Have ``users`` closed-loop users sending (or, with an open loop set on the
        control, run its schedule): more are started, extra ones finish their request
        and stop. Returns at once; :attr:`user_count` says how many run."""

    @property
    def user_count(self) -> int: ...

    def stop(self) -> None:
        """Stop every user (after the drain: nothing is in flight)."""

    def sleep(self, seconds: float) -> None: ...

    def event(self) -> Waitable: ...

    def spawn(self, fn: Callable[[], None]) -> Task: ...

    def open_loop(self, rate: float, arrival: str, max_inflight: int, seed: int) -> Any:
        """The open-loop schedule of one stage (set on the control before start())."""

    def reserve(self, users: int) -> None:
        """Get ready to run up to ``users`` at once (a timeline's largest segment)."""

    def graceful(self, timeout_s: float) -> Any:
        """A context in which users told to stop finish the request they are in."""

    # The engine's own statistics, a cross-check (only read when ``crosscheck``).
    def reset_stats(self) -> None: ...

    def window_stats(self) -> Any: ...

    def merged_stats(self, windows: list[Any], span_s: float) -> dict[str, Any]: ...

    def total_stats(self, span_s: float) -> dict[str, Any]: ...


def wait_until(engine: Engine, condition: Callable[[], bool], timeout_s: float,
               step_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        engine.sleep(step_s)
    return True


def run_program(stages: StageRunner, program: dict[str, Any], trial: int) -> None:
    """One trial: fixed closed-loop levels, a sweep, open-loop rates, then a timeline."""
    from harness.sweep import capacity, sweep_should_stop

    closed: list[dict[str, Any]] = []
    for users in program["levels"]:
        closed.append(stages.closed(users, trial))
    sweep = program.get("sweep")
    if sweep is not None:
        done: list[dict[str, Any]] = []
        for users in sweep["levels"]:
            stage = stages.closed(users, trial, sweep=True)
            done.append(stage)
            stop = sweep_should_stop(done, sweep["min_gain"], sweep["patience"],
                                     program.get("slo_p99_ms"), program["max_error_rate"])
            if stop is not None:
                stage["sweep_stop"] = stop
                emit("sweep", reason=stop)
                break
        closed.extend(done)
    for rate in program["rates"]:
        stages.open(rate, trial)
    if program["fractions"]:
        found = capacity(closed, program.get("slo_p99_ms"), program["max_error_rate"])
        if found is None:
            slo = program.get("slo_p99_ms")
            bound = f"p99 <= {slo:g} ms" if slo is not None else "the objective"
            raise StageError(
                f"no VALID closed-loop stage met {bound} (--slo, else the scenario's, else "
                "the default) and the error bound, so there is no capacity to take "
                "rate_fractions of")
        for fraction in program["fractions"]:
            stages.open(fraction * found["rps"], trial, fraction=fraction,
                        capacity=found["rps"])
    if program.get("timeline"):
        stages.timeline(program["timeline"], trial)


def run_trials(stages: StageRunner, program: dict[str, Any]) -> str | None:
    """Every trial of the program; the error that stopped it early, if one did (the
    stages that ran are kept in ``stages.results``)."""
    try:
        for trial in range(int(program.get("trials", 1))):
            run_program(stages, program, trial)
    except StageError as exc:
        return str(exc)
    return None


class StageRunner:
    """Runs stages one after another with one engine, keeping their results."""

    def __init__(self, engine: Engine, control: Any, recorder: Any, meter: Any,
                 out_dir: Path, target_cpus: int, timing: dict[str, Any]) -> None:
        import signal

        self.engine, self.control = engine, control
        self.recorder, self.meter, self.out_dir = recorder, meter, out_dir
        self.target_cpus = target_cpus
        self.timing = timing
        self.results: list[dict[str, Any]] = []
        self.open_stages: dict[int, int] = {}
        #: The engine's SIGTERM handler, kept for as long as the stages run and after.
        self.signal_handler: Any = None
        #: With workers: the load generator's CPUs, which all of them share.
        self.loadgen_cores = 1
        #: Set on SIGTERM: the stage under way ends at its next wait, keeping what it
        #: measured, and no further stage starts (see StageInterrupted).
        self.stop = engine.event()
        self._alarm = signal.alarm

    def terminate(self) -> None:
        """SIGTERM: from the orchestrator stopping the run, or from the kernel when the
        orchestrator died (die_with_parent). The stage under way ends and is written;
        should anything keep this process from exiting soon after (a stage blocked in a
        call that does not yield), SIGALRM's default action ends it, so no orphaned load
        generator goes on sending."""
        self.stop.set()
        self._alarm(HARD_EXIT_S)

    def closed(self, users: int, trial: int, sweep: bool = False) -> dict[str, Any]:
        return self._stage(users, None, trial, {"mode": "closed", "sweep": sweep})

    def open(self, rate: float, trial: int, **extra: Any) -> dict[str, Any]:
        t = self.timing
        # The same schedule for the same open stage of every target and run: the seed
        # follows the stage's place among the trial's open-loop stages.
        loop = self.engine.open_loop(
            rate, t["arrival"], t["max_inflight"],
            seed=t["seed"] + 1000 * trial + self.open_stages.get(trial, 0))
        self.open_stages[trial] = self.open_stages.get(trial, 0) + 1
        return self._stage(1, loop, trial, {"mode": "open", "rate": rate,
                                            "arrival": t["arrival"], **extra})

    def timeline(self, program: dict[str, Any], trial: int) -> dict[str, Any]:
        """Segments of users back to back in one run (harness.timeline)."""
        return self._stage(program["segments"][0]["users"], None, trial,
                           {"mode": "timeline"}, timeline=program)

    def _stage(self, users: int, loop: Any, trial: int, info: dict[str, Any],
               timeline: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.stop.is_set():
            raise StageInterrupted
        index = len(self.results)
        label = info.get("rate") if loop is not None else users
        result = _run_stage(self, index, users, loop, label, timeline)
        result.update(info, trial=trial)
        worker_samples = getattr(self.control, "worker_samples", None)
        if worker_samples is not None:  # --loadgen-workers: each worker's own count
            result["worker_samples"] = worker_samples()
        if loop is not None:
            result["concurrency"] = None
            result["max_inflight"] = loop.max_inflight
            result["late_tolerance_ms"] = self.timing["late_tolerance_ms"]
        self.results.append(result)
        atomic_write_json(self.out_dir / PARTIAL_FILE, {"stages": self.results})
        if result.get("interrupted"):  # kept above, marked; no later stage runs
            raise StageInterrupted
        died = result.get("target_died_at")
        if died is not None:  # kept above, with its failures; no later stage can run
            at = died - result["stage_started_at"]
            raise StageError(
                f"the target's process (PID {', '.join(map(str, result['dead_pids']))}) died "
                f"{at:.1f} s into the stage at {_load_label(result)}; "
                f"{result['requests'] - result['ok_requests']} of the {result['requests']} "
                "requests sent in its measured window failed, and no later stage was run")
        return result


def _load_label(result: dict[str, Any]) -> str:
    if result.get("mode") == "timeline":
        return "the timeline"
    if result.get("mode") == "open":
        return f"{result.get('rate', 0):,.0f} req/s"
    users = result.get("concurrency")
    return f"{users} user{'' if users == 1 else 's'}"


class Watch:
    """Checks the target's main processes every WATCH_INTERVAL_S during a stage and
    notes when it first found one dead (none to watch in-process)."""

    def __init__(self, engine: Engine, meter: Any) -> None:
        self.engine, self.meter = engine, meter
        self.died_at: float | None = None
        self.dead: list[int] = []
        self._task = engine.spawn(self._run) if getattr(meter, "watch_pids", None) else None

    def _run(self) -> None:
        while self.died_at is None:
            dead = self.meter.dead()
            if dead:
                self.died_at, self.dead = time.time(), dead
                emit("target_died", pids=dead)
                return
            self.engine.sleep(WATCH_INTERVAL_S)

    def stop(self) -> None:
        if self._task is not None:
            self._task.kill()


def _run_stage(ctx: StageRunner, index: int, users: int, loop: Any, label: Any,
               timeline: dict[str, Any] | None = None) -> dict[str, Any]:
    """One stage, with the target's main processes watched: a stage in which the target
    died ends after its current window and says when it died."""
    ctx.control.reset()
    ctx.recorder.clear()
    ctx.control.open_loop = loop
    where = {"index": index, "concurrency": users if loop is None else None,
             "rate": None if loop is None else label}
    emit("stage", phase="spawn", **where)
    stage_started_at = time.time()
    watch = Watch(ctx.engine, ctx.meter)
    try:
        if timeline is not None:
            from harness import timeline as timeline_stage

            result = timeline_stage.run_stage(ctx, index, timeline, where, watch)
        else:
            result = _run_watched_stage(ctx, index, users, loop, where, watch)
    finally:
        watch.stop()
    result["stage_started_at"] = stage_started_at
    result["target_died_at"] = watch.died_at
    result["dead_pids"] = watch.dead
    return result


def spawn_and_warm_up(ctx: StageRunner, users: int, where: dict[str, Any], watch: Watch,
                      what: str = "the concurrency") -> tuple[float, bool]:
    """Start ``users`` and warm up: ``warmup_s``, and until every user has had an answer
    (a user whose first request is still waiting, a cold start or a slow first
    connection, is not at steady state yet), at most ``warmup_max_s``. Returns the
    warm-up's length and whether every user had its answer."""
    engine, control, t, stop = ctx.engine, ctx.control, ctx.timing, ctx.stop
    # Locust warns above 100 users/s; larger stages take an extra second to spawn.
    engine.start(users)
    if not wait_until(engine, lambda: engine.user_count >= users or stop.is_set(),
                      SPAWN_TIMEOUT_S):
        engine.stop()
        raise StageError(f"only {engine.user_count} of {users} users started within "
                         f"{SPAWN_TIMEOUT_S:.0f} s; lower {what} or give the load "
                         "generator more CPUs")
    if stop.is_set():  # nothing measured yet
        engine.stop()
        raise StageInterrupted
    emit("stage", phase="warmup", **where)
    started = time.monotonic()
    stop.wait(t["warmup_s"])
    warmed = wait_until(engine, lambda: control.settled() >= users
                        or watch.died_at is not None or stop.is_set(),
                        max(0.0, t["warmup_max_s"] - t["warmup_s"]), step_s=0.02) \
        and control.settled() >= users
    if stop.is_set():  # SIGTERM before anything was measured: nothing to keep
        engine.stop()
        raise StageInterrupted
    return time.monotonic() - started, warmed


def _run_watched_stage(ctx: StageRunner, index: int, users: int, loop: Any,
                       where: dict[str, Any], watch: Watch) -> dict[str, Any]:
    from harness.validity import Rules, measure_window, reasons, settled, stability

    engine, control, recorder, meter = ctx.engine, ctx.control, ctx.recorder, ctx.meter
    t, stop = ctx.timing, ctx.stop
    warmup_s, warmed = spawn_and_warm_up(ctx, users, where, watch)
    # The target's processes as they are now: after the warm-up, so environments a
    # serverless target started for this stage's users are counted (a few ms, before the
    # window opens).
    meter.attach()

    # Windows until the last few agree. At each edge only cheap reads (CPU, a vectorised
    # pass over the samples so far), so users are held up as little as possible.
    if engine.crosscheck:
        engine.reset_stats()
    edges = [time.time()]
    cpu = [meter.cpu()]
    crosscheck_windows: list[Any] = []
    windows: list[Any] = []
    count, tolerance = t["stability_windows"], t["stability_tolerance"]
    # Open loop: the schedule sets the throughput, so only latency must settle.
    check_rps = loop is None
    # SIGTERM during a window closes it at once: the windows so far are kept, the last
    # one shorter, and the stage is marked interrupted.
    interrupted = False
    # Samples are appended as answers arrive, so a window's completions are among those
    # appended since the previous edge (and a few just before it): scan only those.
    cursor = len(recorder)
    flush_delay = float(getattr(control, "flush_delay_s", 0.0))
    while True:
        emit("stage", phase="measure", window=len(windows) + 1, of=t["max_windows"], **where)
        stop.wait(max(0.0, edges[-1] + t["window_s"] - time.time()))
        edges.append(time.time())
        cpu.append(meter.cpu())
        if engine.crosscheck:
            crosscheck_windows.append(engine.window_stats())
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
        if stop.is_set():
            interrupted = True
            break
        if settled(windows, count, tolerance, check_rps) \
                or len(windows) >= t["max_windows"] or watch.died_at is not None:
            break
    if interrupted and not any(w.completed for w in windows):
        raise StageInterrupted  # no answer measured: nothing to keep
    # Whether the windows agreed, apart from whether they held enough requests (which
    # the verdict judges on its own): a stage is unstable only when they disagreed. An
    # interrupted stage is not judged (its verdict says it was interrupted).
    stable, instability = (False, f"not judged: interrupted after {len(windows)} "
                                  "window(s)") if interrupted \
        else stability(windows, count, tolerance, check_rps)
    kept = min(count, len(windows))
    window_start, window_end = edges[-1 - kept], edges[-1]
    cpu_before, cpu_after = cpu[-1 - kept], cpu[-1]
    crosscheck = engine.merged_stats(crosscheck_windows[-kept:], window_end - window_start) \
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

    from harness.sweep import stage_figures

    samples = recorder.columns()
    figures = stage_figures(samples.start_s, samples.latency_ms, samples.ok,
                            window_start, window_end)
    wall = window_end - window_start
    loadgen_percent = cpu_after.loadgen_percent(cpu_before, wall, ctx.loadgen_cores)
    # The verdict's closed-loop rules, so a sweep's capacity comes from a VALID stage
    # (the report recomputes the full verdict from the samples).
    rules = Rules(max_error_rate=t["max_error_rate"])
    figures["valid"] = not reasons(
        requests=figures["requests"], ok_requests=figures["ok_requests"],
        error_rate=figures["error_rate"], loadgen_cpu_percent=loadgen_percent, stable=stable,
        instability=None, late=0, late_tolerance_ms=None, queued=0, max_inflight=None,
        warmup_complete=warmed, rules=rules)
    figures["loadgen_busy"] = loadgen_percent > rules.loadgen_cpu_limit_percent
    # A target elsewhere (--endpoint) has no CPU figure here: absent, not zero.
    target_cpu_s = cpu_after.target_since(cpu_before) if meter.measures_target else None
    samples_name = save_samples(ctx, index, samples)
    emit("stage", phase="done", requests=len(samples.ok), stable=stable,
         interrupted=interrupted, **where)
    return {
        "concurrency": users,
        "window_start": window_start,
        "window_end": window_end,
        "windows": [w.to_json() for w in windows],
        "windows_kept": kept,
        "stable": stable,
        "instability": instability,
        "interrupted": interrupted,
        "drained": drained,
        "warmup_s": warmup_s,
        "warmup_complete": warmed,
        "truncated": truncated,
        "unanswered": len(unanswered),
        "unsent": unsent,
        "target_cpu_s": target_cpu_s,
        "target_cpu_percent": None if target_cpu_s is None
        else 100.0 * target_cpu_s / (wall * ctx.target_cpus),
        # Every load-generator process's CPU, workers elsewhere included: per request.
        "loadgen_cpu_s": (cpu_after.loadgen_s + cpu_after.remote_s
                          - cpu_before.loadgen_s - cpu_before.remote_s),
        # Of one core: Locust's event loop is one thread, so this is its ceiling whatever
        # CPUs the process may use.
        "loadgen_cpu_percent": loadgen_percent,
        "target_rss_mb": memory.rss_mb,
        "target_pss_mb": memory.pss_mb,
        "target_peak_rss_mb": memory.peak_rss_mb,
        "target_processes_changed": tree_changed,
        "locust": crosscheck,
        "error_kinds": dict(recorder.error_kinds),
        "samples": samples_name,
        **figures,  # the driver's own quick figures, for sweeps; the report recomputes
    }


def cool_down_and_drain(ctx: StageRunner, where: dict[str, Any]) -> tuple[bool, list[float]]:
    """The cool-down (load goes on, so requests sent in the window finish under it),
    then no new sends and a wait for those in flight. Returns whether everything was
    answered, and the send times of what was not by the drain timeout, each recorded as
    a failure. After SIGTERM (``ctx.stop``) there is no cool-down and the drain waits
    at most INTERRUPTED_DRAIN_S."""
    t, control, recorder, stop = ctx.timing, ctx.control, ctx.recorder, ctx.stop
    engine = ctx.engine
    emit("stage", phase="cooldown", **where)
    stop.wait(t["cooldown_s"])  # SIGTERM: no cool-down, and a short drain
    control.draining = True
    drained = wait_until(engine, lambda: control.drained() or stop.is_set(),
                         t["drain_timeout_s"] + float(getattr(control, "drain_margin_s", 0.0))
                         ) and control.drained()
    if not drained and stop.is_set():
        drained = wait_until(engine, control.drained, INTERRUPTED_DRAIN_S)
    why = ("no answer before the run was interrupted" if stop.is_set() and not drained
           else f"no answer within the {t['drain_timeout_s']:.0f} s drain timeout")
    now = time.time()
    # What is in flight, then closed: an answer arriving from here on would count a
    # second time, beside its failure below (an engine with threads drops from the
    # in-flight list what they recorded in between).
    unanswered = recorder.close(control.unanswered())
    for sent_at in unanswered:
        recorder.record_unanswered(sent_at, (now - sent_at) * 1000.0, why)
    return drained, unanswered


def save_samples(ctx: StageRunner, index: int, samples: Any) -> str:
    """The stage's raw samples, beside its record; returns the file's name."""
    name = f"stage-{index}.npz"
    np.savez(ctx.out_dir / name, **samples.to_npz())
    return name
