"""The load generator's process: ``python -m harness.driver PLAN.json``.

The orchestrator writes a plan (target load spec, stages, CPUs), starts this module in a
fresh process and reads back, from the plan's folder, ``result.json`` plus one
``stage-N.npz`` of raw samples per stage. Progress goes to stdout as JSON lines; Locust's
own logging goes to stderr. Exit codes: 0 done, 1 failed, 3 parity mismatch.

Locust monkey-patches gevent into the whole process on import, so this process pins
itself to the load-generator CPUs *before* importing it, and nothing but the load
generator (and, for the in-process target, the application's model threads, pinned to
the target CPUs) runs here.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from targets.files import atomic_write_json

#: Locust's own per-request stats are a cross-check of ours; these are the figures kept.
CROSS_CHECK_PERCENTILES = (0.5, 0.99)
#: Protocols of targets served by another process, reached over the network.
SERVED = ("http", "grpc", "lambda-invoke")
#: Samples before a window's first new one that are scanned too (an answer recorded a
#: moment before the edge but stamped after it).
SCAN_OVERLAP = 256
#: How long all of a stage's users may take to start before the stage is failed.
SPAWN_TIMEOUT_S = 60.0
#: How often the target's main processes are checked for life during a stage.
WATCH_INTERVAL_S = 0.1
#: The stages measured so far, rewritten after each: what is left if this process dies
#: (harness.loadgen reads it).
PARTIAL_FILE = "partial.json"
EXIT_PARITY = 3
#: After SIGTERM (the orchestrator stopping the run), how long the interrupted stage waits
#: for the requests still in flight: the orchestrator kills this process soon after.
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
    print(json.dumps({"event": event, **fields}), flush=True)


def _wait_until(condition: Any, timeout_s: float, step_s: float = 0.005) -> bool:
    import gevent

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(step_s)
    return True


def _locust_snapshot(total: Any, window_s: float) -> dict[str, Any]:
    """Locust's figures for the window, with successes counted as deploybench counts them."""
    ok = total.num_requests - total.num_failures
    out: dict[str, Any] = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": ok / window_s if window_s > 0 else None,
        "avg_ms": total.avg_response_time if total.num_requests else None,
    }
    for p in CROSS_CHECK_PERCENTILES:
        out[f"p{int(p * 100)}_ms"] = (
            total.get_response_time_percentile(p) if total.num_requests else None
        )
    return out


def _check_parity(app: Any, reference: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Parity through the path under test (the embedded model's thread pool)."""
    from targets.bundle import Prediction, compare_predictions

    worst = 0.0
    for index, (example, expected) in enumerate(zip(app.examples, reference, strict=True)):
        want = [Prediction(p["label"], tuple(p["probabilities"])) for p in expected]
        problem, diff = compare_predictions(want, app.predict(example))
        if problem is not None:
            return {"ok": False, "index": index, "problem": problem}
        worst = max(worst, diff)
    return {"ok": True, "examples": len(reference), "max_abs_diff": worst,
            "reference": "the bundle called in the orchestrator's process, through the "
                         "embedded model's threads in the load generator"}


def run(plan: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    from locust.env import Environment
    from locust.event import Events

    from harness.recorder import SampleRecorder
    from harness.resources import ResourceMeter
    from scenarios.control import LoadControl

    spec = plan["spec"]
    protocol = spec["protocol"]
    control = LoadControl()
    extra: dict[str, Any] = {}
    workers = int(plan.get("loadgen_workers") or 1)
    if (workers > 1 or plan.get("remote_workers")) and protocol in SERVED:
        from harness import distributed

        return distributed.run_master(plan, out_dir, workers)
    if protocol in SERVED:
        from harness.distributed import build_user

        user_class: Any = build_user(spec, control)
        meter = ResourceMeter(list(spec.get("watch_pids", [])))
    elif protocol == "inprocess":
        from scenarios.users import inprocess

        rss_before_model = ResourceMeter([]).memory().loadgen_rss_mb
        user_class, app = inprocess.make_user(spec, control)
        meter = ResourceMeter([], thread_ids=app.thread_ids)
        extra = {"load_s": app.load_s, "rss_before_model_mb": rss_before_model,
                 "pool_threads": len(app.thread_ids)}
        if plan.get("reference") is not None:
            parity = _check_parity(app, plan["reference"])
            extra["parity"] = parity
            if not parity["ok"]:
                return {"stages": [], "error": "parity", **extra}
    else:
        raise SystemExit(f"driver: unknown protocol {protocol!r}")

    env = Environment(user_classes=[user_class], events=Events(), stop_timeout=None)
    recorder = SampleRecorder()
    env.events.request.add_listener(recorder.on_request)
    runner = env.create_local_runner()
    env.events.init.fire(environment=env, runner=runner, web_ui=None)
    emit("ready", **{k: v for k, v in extra.items() if k != "parity"})

    stages = StageRunner(env, runner, control, recorder, meter, out_dir,
                         max(1, len(spec["cpus"])), plan["timing"])
    try:
        for trial in range(int(plan["program"].get("trials", 1))):
            _run_program(stages, plan["program"], trial)
    except StageError as exc:  # keep the stages that did run
        extra["error"] = str(exc)
    runner.quit()
    return {"stages": stages.results, "target_in_loadgen": protocol == "inprocess", **extra}


def _run_program(stages: StageRunner, program: dict[str, Any], trial: int) -> None:
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


class StageRunner:
    """Runs stages one after another in one Locust environment, keeping their results."""

    def __init__(self, env: Any, runner: Any, control: Any, recorder: Any, meter: Any,
                 out_dir: Path, target_cpus: int, timing: dict[str, Any]) -> None:
        self.env, self.runner, self.control = env, runner, control
        self.recorder, self.meter, self.out_dir = recorder, meter, out_dir
        self.target_cpus = target_cpus
        self.timing = timing
        self.results: list[dict[str, Any]] = []
        self.open_stages: dict[int, int] = {}
        #: Keep Locust's own figures per window as a cross-check (not with workers: the
        #: master's copy lags their periodic reports).
        self.crosscheck = True
        #: With workers: the load generator's CPUs, which all of them share.
        self.loadgen_cores = 1
        #: Set on SIGTERM: the stage under way ends at its next wait, keeping what it
        #: measured, and no further stage starts (see StageInterrupted).
        import gevent
        from gevent.event import Event

        self.stop = Event()
        self._on_term = gevent.signal_handler(signal.SIGTERM, self._terminate)

    def _terminate(self) -> None:
        """SIGTERM: from the orchestrator stopping the run, or from the kernel when the
        orchestrator died (die_with_parent). The stage under way ends and is written;
        should anything keep this process from exiting soon after (a stage blocked in a
        call that does not yield), SIGALRM's default action ends it, so no orphaned load
        generator goes on sending."""
        self.stop.set()
        signal.alarm(HARD_EXIT_S)

    def closed(self, users: int, trial: int, sweep: bool = False) -> dict[str, Any]:
        return self._stage(users, None, trial, {"mode": "closed", "sweep": sweep})

    def open(self, rate: float, trial: int, **extra: Any) -> dict[str, Any]:
        from scenarios.openloop import OpenLoop

        t = self.timing
        # The same schedule for the same open stage of every target and run: the seed
        # follows the stage's place among the trial's open-loop stages.
        loop = OpenLoop(rate, t["arrival"], t["max_inflight"],
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
    notes when it first found one dead."""

    def __init__(self, meter: Any) -> None:
        import gevent

        self.meter = meter
        self.died_at: float | None = None
        self.dead: list[int] = []
        self._greenlet = gevent.spawn(self._run) if getattr(meter, "watch_pids", None) \
            else None

    def _run(self) -> None:
        import gevent

        while self.died_at is None:
            dead = self.meter.dead()
            if dead:
                self.died_at, self.dead = time.time(), dead
                emit("target_died", pids=dead)
                return
            gevent.sleep(WATCH_INTERVAL_S)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()


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
    watch = Watch(ctx.meter)
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


def _run_watched_stage(ctx: StageRunner, index: int, users: int, loop: Any,
                       where: dict[str, Any], watch: Watch) -> dict[str, Any]:
    import gevent
    import numpy as np

    from harness.validity import Rules, measure_window, reasons, settled, stability

    env, runner, control, recorder, meter = (ctx.env, ctx.runner, ctx.control, ctx.recorder,
                                             ctx.meter)
    t, stop = ctx.timing, ctx.stop
    # Locust warns above 100 users/s; larger stages take an extra second to spawn.
    runner.start(users, spawn_rate=min(users, 100))
    if not _wait_until(lambda n=users: runner.user_count >= n or stop.is_set(),
                       SPAWN_TIMEOUT_S):
        runner.stop()
        raise StageError(f"only {runner.user_count} of {users} users started within "
                         f"{SPAWN_TIMEOUT_S:.0f} s; lower the concurrency or give the "
                         "load generator more CPUs")
    if stop.is_set():  # nothing measured yet
        raise StageInterrupted
    emit("stage", phase="warmup", **where)
    warmup_started = time.monotonic()
    stop.wait(t["warmup_s"])
    # ... and until every user has had an answer: a user whose first request is still
    # waiting (a cold start, a slow first connection) is not at steady state yet.
    warmed = _wait_until(lambda: control.settled() >= users or watch.died_at is not None
                         or stop.is_set(),
                         max(0.0, t["warmup_max_s"] - t["warmup_s"]), step_s=0.02) \
        and control.settled() >= users
    if stop.is_set():
        raise StageInterrupted
    warmup_s = time.monotonic() - warmup_started
    # The target's processes as they are now: after the warm-up, so environments a
    # serverless target started for this stage's users are counted (a few ms, before the
    # window opens).
    meter.attach()

    # Windows until the last few agree. At each edge only cheap reads (CPU, a vectorised
    # pass over the samples so far), so users are held up as little as possible.
    from locust.stats import StatsEntry

    env.stats.reset_all()
    edges = [time.time()]
    cpu = [meter.cpu()]
    locust_windows: list[dict[str, Any]] = []
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
        locust_windows.append(env.stats.total.serialize())
        env.stats.reset_all()
        begin = max(0, cursor - SCAN_OVERLAP)
        if flush_delay:  # workers: let their pushes of the window's answers arrive
            gevent.sleep(flush_delay)
            begin = 0
        cursor = len(recorder)
        windows.append(measure_window(
            np.frombuffer(recorder.start_s, dtype=np.float64)[begin:cursor],
            np.frombuffer(recorder.latency_ms, dtype=np.float64)[begin:cursor],
            np.frombuffer(recorder.ok, dtype=np.int8)[begin:cursor].astype(bool),
            edges[-2], edges[-1]))
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
    locust_stats = _merge_locust(StatsEntry, env, locust_windows[-kept:],
                                 window_end - window_start) if ctx.crosscheck else {}

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
    runner.stop()
    control.open_loop = None

    from harness.sweep import stage_figures

    figures = stage_figures(np.frombuffer(recorder.start_s, dtype=np.float64),
                            np.frombuffer(recorder.latency_ms, dtype=np.float64),
                            np.frombuffer(recorder.ok, dtype=np.int8).astype(bool),
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
    samples_name = f"stage-{index}.npz"
    _save_samples(ctx.out_dir / samples_name, recorder)
    emit("stage", phase="done", requests=len(recorder), stable=stable,
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
        "locust": locust_stats,
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
    emit("stage", phase="cooldown", **where)
    stop.wait(t["cooldown_s"])  # SIGTERM: no cool-down, and a short drain
    control.draining = True
    drained = _wait_until(lambda: control.drained() or stop.is_set(), t["drain_timeout_s"]
                          + float(getattr(control, "drain_margin_s", 0.0))) \
        and control.drained()
    if not drained and stop.is_set():
        drained = _wait_until(control.drained, INTERRUPTED_DRAIN_S)
    why = ("no answer before the run was interrupted" if stop.is_set() and not drained
           else f"no answer within the {t['drain_timeout_s']:.0f} s drain timeout")
    now = time.time()
    unanswered = control.unanswered()
    for sent_at in unanswered:
        recorder.record_unanswered(sent_at, (now - sent_at) * 1000.0, why)
    recorder.closed = True  # answers arriving from here on were just counted as failures
    return drained, unanswered


def _merge_locust(stats_entry: Any, env: Any, windows: list[dict[str, Any]], span_s: float
                  ) -> dict[str, Any]:
    """Locust's own figures over the kept windows (its histograms merge exactly)."""
    if not windows:
        return {}
    total = stats_entry.unserialize(windows[0], env.stats)
    for data in windows[1:]:
        total.extend(stats_entry.unserialize(data, env.stats))
    return _locust_snapshot(total, span_s)


def _save_samples(path: Path, recorder: Any) -> None:
    import numpy as np

    np.savez(
        path,
        start_s=np.frombuffer(recorder.start_s, dtype=np.float64),
        latency_ms=np.frombuffer(recorder.latency_ms, dtype=np.float64),
        ok=np.frombuffer(recorder.ok, dtype=np.int8).astype(bool),
        cold=np.frombuffer(recorder.cold, dtype=np.int8).astype(bool),
        send_delay_ms=np.frombuffer(recorder.send_delay_ms, dtype=np.float64),
        queued=np.frombuffer(recorder.queued, dtype=np.int8).astype(bool),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.driver PLAN.json", file=sys.stderr)
        return 2
    from targets.process import die_with_parent

    die_with_parent()
    plan_path = Path(args[0])
    plan = json.loads(plan_path.read_text())
    os.sched_setaffinity(0, plan["loadgen_cpus"])
    # The in-process model's threads use one torch thread each; set before torch loads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = plan_path.parent
    result = run(plan, out_dir)
    tmp = out_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out_dir / "result.json")
    if result.get("error") == "parity":
        return EXIT_PARITY
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
