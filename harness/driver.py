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

import base64
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

#: Locust's own per-request stats are a cross-check of ours; these are the figures kept.
CROSS_CHECK_PERCENTILES = (0.5, 0.99)
#: How long all of a stage's users may take to start before the stage is failed.
SPAWN_TIMEOUT_S = 60.0
EXIT_PARITY = 3


class StageError(RuntimeError):
    """A stage could not run as planned (e.g. not every user started)."""


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


def _locust_snapshot(env: Any, window_s: float) -> dict[str, Any]:
    """Locust's figures for the window, with successes counted as deploybench counts them."""
    total = env.stats.total
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
    if protocol == "http":
        from scenarios.users import http

        payloads = [(base64.b64decode(p["body_b64"]), p["headers"]) for p in spec["payloads"]]
        user_class: Any = http.make_user(spec, payloads, control)
        meter = ResourceMeter(list(spec.get("watch_pids", [])))
    elif protocol == "grpc":
        from scenarios.users import grpc as grpc_user

        user_class = grpc_user.make_user(spec, control)
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
    target_cpus = max(1, len(spec["cpus"]))
    emit("ready", **{k: v for k, v in extra.items() if k != "parity"})

    stages_out: list[dict[str, Any]] = []
    try:
        for index, stage in enumerate(plan["stages"]):
            stages_out.append(_run_stage(env, runner, control, recorder, meter, index, stage,
                                         out_dir, target_cpus))
    except StageError as exc:  # keep the stages that did run
        extra["error"] = str(exc)
    runner.quit()
    return {"stages": stages_out, "target_in_loadgen": protocol == "inprocess", **extra}


def _run_stage(env: Any, runner: Any, control: Any, recorder: Any, meter: Any, index: int,
               stage: dict[str, Any], out_dir: Path, target_cpus: int
               ) -> dict[str, Any]:
    import gevent

    users = int(stage["concurrency"])
    control.reset()
    recorder.clear()
    emit("stage", index=index, phase="spawn", concurrency=users)
    # Locust warns above 100 users/s; larger stages take an extra second to spawn.
    runner.start(users, spawn_rate=min(users, 100))
    if not _wait_until(lambda n=users: runner.user_count >= n, SPAWN_TIMEOUT_S):
        runner.stop()
        raise StageError(f"only {runner.user_count} of {users} users started within "
                         f"{SPAWN_TIMEOUT_S:.0f} s; lower the concurrency or give the "
                         "load generator more CPUs")
    emit("stage", index=index, phase="warmup", concurrency=users)
    warmup_started = time.monotonic()
    gevent.sleep(stage["warmup_s"])
    # ... and until every user has had an answer: a user whose first request is still
    # waiting (a cold start, a slow first connection) is not at steady state yet.
    warmed = _wait_until(lambda: control.settled() >= users,
                         max(0.0, stage["warmup_max_s"] - stage["warmup_s"]), step_s=0.02)
    warmup_s = time.monotonic() - warmup_started
    # The target's processes as they are now: after the warm-up, so environments a
    # serverless target started for this stage's users are counted (a few ms, before the
    # window opens).
    meter.attach()

    # The window's edges: only the cheap CPU read, so users are not held up.
    env.stats.reset_all()
    cpu_before = meter.cpu()
    window_start = time.time()
    emit("stage", index=index, phase="measure", concurrency=users)
    gevent.sleep(stage["duration_s"])
    window_end = time.time()
    locust_stats = _locust_snapshot(env, window_end - window_start)
    cpu_after = meter.cpu()

    emit("stage", index=index, phase="cooldown", concurrency=users)
    gevent.sleep(stage["cooldown_s"])
    control.draining = True
    drained = _wait_until(lambda: not control.inflight, stage["drain_timeout_s"])
    now = time.time()
    unanswered = list(control.inflight.values())
    for sent_at in unanswered:
        recorder.record_unanswered(
            sent_at, (now - sent_at) * 1000.0,
            f"no answer within the {stage['drain_timeout_s']:.0f} s drain timeout")
    recorder.closed = True  # answers arriving from here on were just counted as failures
    truncated = sum(window_start <= sent_at < window_end for sent_at in unanswered)
    # Everything sent in the window is answered (or given up on): slow reads are safe.
    memory = meter.memory()
    tree_changed = meter.tree_changed()
    runner.stop()

    wall = window_end - window_start
    target_cpu_s = cpu_after.target_since(cpu_before)
    samples_name = f"stage-{index}.npz"
    _save_samples(out_dir / samples_name, recorder)
    emit("stage", index=index, phase="done", concurrency=users, requests=len(recorder))
    return {
        "concurrency": users,
        "window_start": window_start,
        "window_end": window_end,
        "drained": drained,
        "warmup_s": warmup_s,
        "warmup_complete": warmed,
        "truncated": truncated,
        "unanswered": len(unanswered),
        "target_cpu_s": target_cpu_s,
        "target_cpu_percent": 100.0 * target_cpu_s / (wall * target_cpus),
        "loadgen_cpu_s": cpu_after.loadgen_s - cpu_before.loadgen_s,
        # Of one core: Locust's event loop is one thread, so this is its ceiling whatever
        # CPUs the process may use.
        "loadgen_cpu_percent": 100.0 * (cpu_after.loadgen_s - cpu_before.loadgen_s) / wall,
        "target_rss_mb": memory.rss_mb,
        "target_pss_mb": memory.pss_mb,
        "target_peak_rss_mb": memory.peak_rss_mb,
        "target_processes_changed": tree_changed,
        "locust": locust_stats,
        "error_kinds": dict(recorder.error_kinds),
        "samples": samples_name,
    }


def _save_samples(path: Path, recorder: Any) -> None:
    import numpy as np

    np.savez(
        path,
        start_s=np.frombuffer(recorder.start_s, dtype=np.float64),
        latency_ms=np.frombuffer(recorder.latency_ms, dtype=np.float64),
        ok=np.frombuffer(recorder.ok, dtype=np.int8).astype(bool),
        cold=np.frombuffer(recorder.cold, dtype=np.int8).astype(bool),
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
