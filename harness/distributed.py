"""Load from several Locust processes (``run --loadgen-workers N``), in Locust's own
distributed mode: the driver becomes a Locust master, N worker processes run the users.

One Locust process is one event loop on one core; past ~90% of it the load generator,
not the target, sets the figures (the validity rules mark such stages INVALID). Workers
multiply that ceiling on this machine's load-generator CPUs. (Workers on other machines
run today only as plain Locust, through docker-compose.yml, without these samples.)

Every figure still comes from raw per-request samples, never from averaged percentiles:

* each worker records its own samples with the harness's listener and streams them to
  the master every ``PUSH_INTERVAL_S`` (custom Locust messages), tagged with the stage's
  epoch so a late message of another stage is never mixed in;
* the master appends them to one merged recorder, on which the same stage loop as the
  single-process driver measures windows, stability and the final figures;
* a window is measured ``FLUSH_DELAY_S`` after its edge, over all samples so far, so
  answers that completed before the edge but were pushed after it still count in it;
* at the end of a stage the master asks every worker to drain: each waits for its
  requests in flight (up to the drain timeout), sends its last samples, then the send
  times of what is still unanswered (which the master records as failures) and its own
  count of the stage's samples. The master waits longer than the workers; a worker that
  never reports fails the stage rather than leaving its samples out silently.

Each stage records every worker's own sample count (``worker_samples``, in worker order;
their sum must equal the merged rows). The load-generator CPU rule takes the worse of the
busiest worker (each is one event loop: one core at most), over its own readings'
interval, and all workers with the master over the load-generator CPUs they share.

Closed-loop stages only: an open-loop schedule is one arrival process, not yet split
across workers, and the in-process target runs inside the load generator.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: How often a worker sends the samples recorded since its last message.
PUSH_INTERVAL_S = 0.2
#: The master measures a window this long after its edge, when every worker has pushed
#: what completed before it (a push is at most one interval late, plus transit).
FLUSH_DELAY_S = 2 * PUSH_INTERVAL_S + 0.1
#: The master waits this much longer than the workers' own drain timeout for their
#: reports (they start draining when its message arrives).
DRAIN_MARGIN_S = 5.0
WORKER_CONNECT_TIMEOUT_S = 60.0
RESET, DRAIN, SAMPLES, DRAINED = "db_reset", "db_drain", "db_samples", "db_drained"
ARRAYS = (("start_s", "d"), ("latency_ms", "d"), ("ok", "b"), ("cold", "b"),
          ("send_delay_ms", "d"), ("queued", "b"))


def build_user(spec: dict[str, Any], control: Any) -> Any:
    """The Locust user class for a served target (the same class name in every process,
    as Locust's master and workers match users by name)."""
    if spec["protocol"] == "http":
        from scenarios.users import http

        payloads = [(base64.b64decode(p["body_b64"]), p["headers"]) for p in spec["payloads"]]
        return http.make_user(spec, payloads, control)
    if spec["protocol"] == "lambda-invoke":
        from scenarios.users import lambdainvoke

        return lambdainvoke.make_user(spec, control)
    from scenarios.users import grpc as grpc_user

    return grpc_user.make_user(spec, control)


# -- the master --------------------------------------------------------------------------

class RemoteControl:
    """The master's stand-in for :class:`scenarios.control.LoadControl`: the same calls
    the stage loop makes, answered from what the workers report."""

    def __init__(self, runner: Any, workers: int, recorder: Any, drain_timeout_s: float
                 ) -> None:
        self.runner, self.workers, self.recorder = runner, workers, recorder
        self.drain_timeout_s = drain_timeout_s
        self.open_loop: Any = None
        self.epoch = 0
        self.latest: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}
        #: Each worker's own count of the stage's samples, by worker index (its report
        #: at the drain: a sample lost on the way would make the merged count differ).
        self.reported: dict[int, int] = {}
        #: (CPU seconds, wall time of the reading) per worker, as last pushed.
        self.cpu_s: dict[str, tuple[float, float]] = {}
        self._drained: dict[str, list[float]] = {}
        self._draining = False
        self.flush_delay_s = FLUSH_DELAY_S
        self.drain_margin_s = DRAIN_MARGIN_S
        runner.register_message(SAMPLES, self._on_samples)
        runner.register_message(DRAINED, self._on_drained)

    def reset(self) -> None:
        self.epoch += 1
        self.latest.clear()
        self.counts.clear()
        self.reported.clear()
        self._drained.clear()
        self._draining = False
        self.runner.send_message(RESET, {"epoch": self.epoch})

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        if value and not self._draining:
            self.runner.send_message(DRAIN, {"epoch": self.epoch,
                                             "timeout_s": self.drain_timeout_s})
        self._draining = value

    def settled(self) -> int:
        return sum(int(v.get("settled", 0)) for v in self.latest.values())

    def drained(self) -> bool:
        return len(self._drained) >= self.workers

    def unanswered(self) -> list[float]:
        if not self.drained():
            from harness.driver import StageError

            raise StageError(f"{self.workers - len(self._drained)} of {self.workers} "
                             "load-generator workers did not report their drain; their "
                             "samples would be missing, so the stage is not reported")
        return [t for sent in self._drained.values() for t in sent]

    def worker_samples(self) -> list[int]:
        """Each worker's own count of its samples this stage, in worker order."""
        return [self.reported[i] for i in sorted(self.reported)]

    def _on_samples(self, environment: Any, msg: Any, **_: Any) -> None:
        data = msg.data
        self.cpu_s[msg.node_id] = (float(data["cpu_s"]), float(data["at"]))
        if data["epoch"] != self.epoch or self.recorder.closed:
            return
        for name, _code in ARRAYS:
            getattr(self.recorder, name).extend(data[name])
        self.counts[msg.node_id] = self.counts.get(msg.node_id, 0) + len(data["latency_ms"])
        self.latest[msg.node_id] = data

    def _on_drained(self, environment: Any, msg: Any, **_: Any) -> None:
        data = msg.data
        if data["epoch"] != self.epoch or self.recorder.closed:
            return
        self.recorder.error_kinds.update(data["error_kinds"])
        self.reported[int(data["index"])] = int(data["samples"])
        # Unanswered requests are failed samples of the worker that sent them.
        self.counts[msg.node_id] = self.counts.get(msg.node_id, 0) + len(data["unanswered"])
        self._drained[msg.node_id] = list(data["unanswered"])


class DistributedMeter:
    """The target's CPU and memory as the single-process meter reads them; the load
    generator's CPU per worker (as they report it) beside the master's own."""

    def __init__(self, meter: Any, control: RemoteControl) -> None:
        self.meter, self.control = meter, control

    @property
    def measures_target(self) -> bool:
        return bool(self.meter.measures_target)

    def attach(self) -> None:
        self.meter.attach()

    def tree_changed(self) -> bool:
        return bool(self.meter.tree_changed())

    def memory(self) -> Any:
        return self.meter.memory()

    def cpu(self) -> Any:
        from harness.resources import CpuReading

        mine = self.meter.cpu()
        workers = dict(self.control.cpu_s)
        return CpuReading(mine.target, mine.loadgen_s + sum(c for c, _ in workers.values()),
                          workers)


def run_master(plan: dict[str, Any], out_dir: Path, workers: int) -> dict[str, Any]:
    import gevent
    from locust.env import Environment
    from locust.event import Events

    from harness.driver import StageError, StageRunner, _run_program, emit
    from harness.recorder import SampleRecorder
    from harness.resources import ResourceMeter
    from targets.process import child_env, free_port

    spec = plan["spec"]
    recorder = SampleRecorder()
    user_class = build_user(spec, None)
    env = Environment(user_classes=[user_class], events=Events(), stop_timeout=None)
    port = free_port("127.0.0.1")
    runner = env.create_master_runner(master_bind_host="127.0.0.1", master_bind_port=port)
    control = RemoteControl(runner, workers, recorder, plan["timing"]["drain_timeout_s"])
    meter = DistributedMeter(ResourceMeter(list(spec.get("watch_pids", []))), control)
    plan_path = out_dir / "worker-plan.json"
    plan_path.write_text(json.dumps(plan))
    procs = []
    info: dict[str, Any] = {"loadgen_workers": workers}
    try:
        log_dir = Path(plan.get("log_dir") or out_dir)
        logs = [log_dir / f"loadgen-{plan.get('target', 'target')}-worker-{i}.log"
                for i in range(workers)]
        for index, path in enumerate(logs):
            with path.open("ab") as log:
                # child_env: each worker dies with this driver (PR_SET_PDEATHSIG).
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "harness.distributed", str(plan_path), str(port),
                     str(index)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    env=child_env({"PYTHONUNBUFFERED": "1"}), start_new_session=True))
        deadline = time.monotonic() + WORKER_CONNECT_TIMEOUT_S
        while runner.worker_count < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise StageError(f"only {runner.worker_count} of {workers} load-generator "
                                 f"workers connected; see {logs[0].parent}/"
                                 f"{logs[0].name[:-6]}*.log")
            gevent.sleep(0.05)
        emit("ready", loadgen_workers=workers)
        stages = StageRunner(env, runner, control, recorder, meter, out_dir,
                             max(1, len(spec["cpus"])), plan["timing"])
        stages.crosscheck = False  # the master's Locust stats lag the workers' reports
        stages.loadgen_cores = max(1, len(plan["loadgen_cpus"]))
        try:
            for trial in range(int(plan["program"].get("trials", 1))):
                _run_program(stages, plan["program"], trial)
        except StageError as exc:
            info["error"] = str(exc)
        return {"stages": stages.results, "target_in_loadgen": False, **info}
    except StageError as exc:
        return {"stages": [], "error": str(exc), **info}
    finally:
        runner.quit()
        for proc in procs:  # by PID: SIGTERM, then SIGKILL
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- a worker ----------------------------------------------------------------------------

def worker_main(plan_path: Path, port: int, index: int) -> int:
    from targets.process import die_with_parent

    die_with_parent()
    plan = json.loads(plan_path.read_text())
    os.sched_setaffinity(0, plan["loadgen_cpus"])
    import gevent
    import psutil
    from locust.env import Environment
    from locust.event import Events

    from harness.driver import _wait_until
    from harness.recorder import SampleRecorder
    from scenarios.control import LoadControl

    control = LoadControl()
    recorder = SampleRecorder()
    env = Environment(user_classes=[build_user(plan["spec"], control)], events=Events(),
                      stop_timeout=None)
    env.events.request.add_listener(recorder.on_request)
    runner = env.create_worker_runner("127.0.0.1", port)
    me = psutil.Process()
    state = {"epoch": 0, "sent": 0}

    def push() -> None:
        """Send what was recorded since the last push (and this process's CPU time)."""
        start, end = state["sent"], len(recorder)
        cpu = me.cpu_times()
        data: dict[str, Any] = {"epoch": state["epoch"], "settled": control.settled(),
                                "cpu_s": cpu.user + cpu.system, "at": time.time(),
                                "index": index}
        for name, _code in ARRAYS:
            data[name] = getattr(recorder, name)[start:end].tolist()
        state["sent"] = end
        runner.send_message(SAMPLES, data)

    def pump() -> None:
        while True:
            gevent.sleep(PUSH_INTERVAL_S)
            push()

    def on_reset(environment: Any, msg: Any, **_: Any) -> None:
        control.reset()
        recorder.clear()
        state.update(epoch=msg.data["epoch"], sent=0)

    def on_drain(environment: Any, msg: Any, **_: Any) -> None:
        epoch = msg.data["epoch"]
        control.draining = True
        _wait_until(lambda: not control.inflight, float(msg.data["timeout_s"]))
        if state["epoch"] != epoch:  # the master moved on (it gave up on this stage)
            return
        unanswered = list(control.inflight.values())
        recorder.closed = True  # a late answer now would count twice
        push()
        runner.send_message(DRAINED, {"epoch": epoch, "unanswered": unanswered,
                                      "error_kinds": dict(recorder.error_kinds),
                                      "index": index,
                                      # Its own count: answered, failed and unanswered.
                                      "samples": len(recorder) + len(unanswered)})

    runner.register_message(RESET, on_reset)
    runner.register_message(DRAIN, on_drain, concurrent=True)
    gevent.spawn(pump)
    runner.greenlet.join()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m harness.distributed PLAN.json MASTER_PORT INDEX",
              file=sys.stderr)
        return 2
    return worker_main(Path(args[0]), int(args[1]), int(args[2]))


if __name__ == "__main__":
    sys.exit(main())

