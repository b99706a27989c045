"""The load generator's process: ``python -m scenarios.driver PLAN.json``.

The orchestrator writes a plan (target load spec, stages, CPUs), starts this module in
a fresh process and reads back, from the plan's output folder, ``result.json`` plus one
``stage-N.npz`` of raw samples per stage. Progress goes to stdout as JSON lines; Locust's
own logging goes to stderr.

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
    total = env.stats.total
    out: dict[str, Any] = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": total.num_requests / window_s if window_s > 0 else None,
        "avg_ms": total.avg_response_time if total.num_requests else None,
    }
    for p in CROSS_CHECK_PERCENTILES:
        out[f"p{int(p * 100)}_ms"] = (
            total.get_response_time_percentile(p) if total.num_requests else None
        )
    return out


def run(plan: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    import gevent  # after pinning; Locust's import patches the process
    from locust.env import Environment
    from locust.event import Events

    from scenarios.control import LoadControl
    from scenarios.recorder import SampleRecorder
    from scenarios.resources import ResourceMeter

    spec = plan["spec"]
    protocol = spec["protocol"]
    control = LoadControl()
    extra: dict[str, Any] = {}
    rss_before_model = ResourceMeter([]).read().loadgen_rss_mb
    if protocol == "http":
        from scenarios.users import http

        payloads = [(base64.b64decode(p["body_b64"]), p["headers"]) for p in spec["payloads"]]
        user_class: Any = http.make_user(spec, payloads, control)
        meter = ResourceMeter(list(spec.get("watch_pids", [])))
    elif protocol == "inprocess":
        from scenarios.users import inprocess

        user_class, app = inprocess.make_user(spec, control)
        meter = ResourceMeter([], thread_ids=app.thread_ids)
        extra = {"load_s": app.load_s, "rss_before_model_mb": rss_before_model,
                 "pool_threads": len(app.thread_ids)}
    else:
        raise SystemExit(f"driver: unknown protocol {protocol!r}")

    env = Environment(user_classes=[user_class], events=Events(), stop_timeout=None)
    recorder = SampleRecorder()
    env.events.request.add_listener(recorder.on_request)
    runner = env.create_local_runner()
    env.events.init.fire(environment=env, runner=runner, web_ui=None)
    loadgen_cpus = len(plan["loadgen_cpus"])
    target_cpus = len(spec["cpus"])
    emit("ready", **extra)

    stages_out = []
    for index, stage in enumerate(plan["stages"]):
        users = int(stage["concurrency"])
        control.reset()
        recorder.clear()
        emit("stage", index=index, phase="spawn", concurrency=users)
        spawn_started = time.time()
        # Locust warns above 100 users/s; larger stages take an extra second to spawn.
        runner.start(users, spawn_rate=min(users, 100))
        _wait_until(lambda n=users: runner.user_count >= n, timeout_s=60)
        emit("stage", index=index, phase="warmup", concurrency=users)
        gevent.sleep(stage["warmup_s"])

        env.stats.reset_all()
        before = meter.read()
        window_start = time.time()
        emit("stage", index=index, phase="measure", concurrency=users)
        gevent.sleep(stage["duration_s"])
        window_end = time.time()
        after = meter.read()
        locust_stats = _locust_snapshot(env, window_end - window_start)

        emit("stage", index=index, phase="cooldown", concurrency=users)
        gevent.sleep(stage["cooldown_s"])
        control.draining = True
        drained = _wait_until(lambda: control.inflight == 0, stage["drain_timeout_s"])
        truncated = control.inflight
        runner.stop()
        stop_time = time.time()

        wall = window_end - window_start
        samples_name = f"stage-{index}.npz"
        _save_samples(out_dir / samples_name, recorder)
        stages_out.append({
            "concurrency": users,
            "spawn_start": spawn_started,
            "window_start": window_start,
            "window_end": window_end,
            "stop_time": stop_time,
            "drained": drained,
            "truncated": truncated,
            "target_cpu_percent": 100.0 * (after.target_cpu_s - before.target_cpu_s)
            / (wall * target_cpus),
            "target_cpu_s": after.target_cpu_s - before.target_cpu_s,
            "loadgen_cpu_percent": 100.0 * (after.loadgen_cpu_s - before.loadgen_cpu_s)
            / (wall * loadgen_cpus),
            "target_rss_mb": after.target_rss_mb,
            "target_pss_mb": after.target_pss_mb,
            "loadgen_rss_mb": after.loadgen_rss_mb,
            "locust": locust_stats,
            "error_kinds": dict(recorder.error_kinds),
            "samples": samples_name,
        })
        emit("stage", index=index, phase="done", concurrency=users, requests=len(recorder))
    runner.quit()
    return {"stages": stages_out, "target_in_loadgen": protocol == "inprocess", **extra}


def _save_samples(path: Path, recorder: Any) -> None:
    import numpy as np

    np.savez(
        path,
        start_s=np.frombuffer(recorder.start_s, dtype=np.float64),
        latency_ms=np.frombuffer(recorder.latency_ms, dtype=np.float64),
        ok=np.frombuffer(recorder.ok, dtype=np.int8).astype(bool),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scenarios.driver PLAN.json", file=sys.stderr)
        return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
