"""Locust in this one process: the load generator's usual engine for a served target
(``run --loadgen-workers N`` uses :mod:`.master` instead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from locust.env import Environment
from locust.event import Events

from harness.loadgen.control import LoadControl
from harness.loadgen.protocol import Plan
from harness.loadgen.recorder import SampleRecorder
from harness.loadgen.resources import ResourceMeter
from harness.loadgen.stagekit import emit
from harness.loadgen.stages import StageRunner, run_trials
from harness.loadgen.swarm.engine import LocustEngine, on_sigterm
from harness.loadgen.swarm.users import build_user


def run(plan: Plan, out_dir: Path) -> dict[str, Any]:
    """Run the plan's stages with one Locust runner in this process."""
    spec = plan.spec
    control = LoadControl()
    user_class = build_user(spec, control)
    meter = ResourceMeter(list(spec.get("watch_pids", [])))
    env = Environment(user_classes=[user_class], events=Events(), stop_timeout=None)
    recorder = SampleRecorder()
    env.events.request.add_listener(recorder.on_request)
    runner = env.create_local_runner()
    env.events.init.fire(environment=env, runner=runner, web_ui=None)
    emit("ready")

    stages = StageRunner(LocustEngine(env, runner), control, recorder, meter, out_dir,
                         max(1, len(spec["cpus"])), plan.timing)
    stages.signal_handler = on_sigterm(stages)
    stages.metrics_url = spec.get("metrics_url")
    error = run_trials(stages, plan.program)
    runner.quit()
    result: dict[str, Any] = {"stages": stages.reports(), "target_in_loadgen": False}
    if error is not None:
        result["error"] = error
    return result


