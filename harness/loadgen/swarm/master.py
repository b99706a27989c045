"""Load from several Locust processes (``run --loadgen-workers N``), in Locust's own
distributed mode: the driver becomes a Locust master, N worker processes run the users.

One Locust process is one event loop on one core; past ~90% of it the load generator,
not the target, sets the figures (the validity rules mark such stages INVALID). Workers
multiply that ceiling on this machine's load-generator CPUs, and workers on other
machines (``deploybench loadgen-worker --master HOST:PORT``, ``run
--loadgen-remote-workers N``) beyond them.

Every worker connects to the master, which sends each its index and the target's plan
(the users are built from it before any is spawned); a worker started by the master
serves that one job and dies with it, one started by hand serves each target's master
in turn until the run's last.

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

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.loadgen.protocol import REMOTE_CONNECT_TIMEOUT_S, Plan
from harness.loadgen.recorder import SampleRecorder
from harness.loadgen.resources import CpuReading, ResourceMeter
from harness.loadgen.stagekit import StageError, emit
from harness.loadgen.stages import StageRunner, run_trials
from harness.loadgen.swarm.messages import (
    ARRAYS,
    DRAIN,
    DRAIN_MARGIN_S,
    DRAINED,
    FLUSH_DELAY_S,
    PLAN,
    PLAN_RESEND_S,
    PLAN_TIMEOUT_S,
    READY,
    RESET,
    SAMPLES,
    WORKER_CONNECT_TIMEOUT_S,
    parse_master,
)
from harness.loadgen.swarm.users import build_user
from targets.runtimes.process import child_env, free_port


class RemoteControl:
    """The master's stand-in for :class:`harness.loadgen.control.LoadControl`: the same calls
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
        #: Each worker that took the plan, by Locust client id: its index, host, whether
        #: the master started it, and its clock's offset from the master's.
        self.ready: dict[str, dict[str, Any]] = {}
        self._draining = False
        self.flush_delay_s = FLUSH_DELAY_S
        self.drain_margin_s = DRAIN_MARGIN_S
        runner.register_message(SAMPLES, self._on_samples)
        runner.register_message(DRAINED, self._on_drained)
        runner.register_message(READY, self._on_ready)

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

    def local_nodes(self) -> set[str]:
        return {node for node, w in self.ready.items() if w["local"]}

    def _on_ready(self, environment: Any, msg: Any, **_: Any) -> None:
        data = msg.data
        # The worker's clock at sending minus ours at receipt: its offset, less the
        # transit time (a few ms on a LAN). Samples carry the worker's clock.
        self.ready[msg.node_id] = {
            "index": int(data["index"]), "host": data["host"], "pid": data["pid"],
            "local": bool(data["local"]),
            "clock_offset_ms": round((float(data["at"]) - time.time()) * 1000.0, 1)}

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

    def rss_mb(self) -> float | None:
        value = self.meter.rss_mb()
        return None if value is None else float(value)

    def cpu(self) -> Any:
        mine = self.meter.cpu()
        workers = dict(self.control.cpu_s)
        # This machine's load-generator CPUs carry the master and the workers it started;
        # a worker elsewhere counts only as itself (the busiest-worker rule).
        local = self.control.local_nodes()
        shared = sum(c for node, (c, _) in workers.items() if node in local)
        remote = sum(c for node, (c, _) in workers.items() if node not in local)
        return CpuReading(mine.target, mine.loadgen_s + shared, workers, remote)

    # The target's main processes, watched during each stage (harness.loadgen.stagekit.Watch).
    @property
    def watch_pids(self) -> list[int]:
        return list(self.meter.watch_pids)

    def dead(self) -> list[int]:
        return list(self.meter.dead())


def run_master(plan: Plan, out_dir: Path, workers: int) -> dict[str, Any]:
    """Drive the plan's stages through ``workers`` local worker processes, plus
    ``plan.remote_workers`` started elsewhere (``deploybench loadgen-worker``)."""
    from locust.env import Environment
    from locust.event import Events

    # Locust's engine imports gevent and Locust: only here, in the load generator.
    from harness.loadgen.swarm.engine import LocustEngine, on_sigterm

    spec = plan.spec
    remote = plan.remote_workers
    expected = workers + remote
    if plan.master:
        host, port = parse_master(plan.master)
    else:
        host, port = "127.0.0.1", free_port("127.0.0.1")
    info: dict[str, Any] = {"loadgen_workers": workers, "loadgen_remote_workers": remote,
                            "loadgen_master": f"{host}:{port}"}
    recorder = SampleRecorder()
    user_class = build_user(spec, None)
    env = Environment(user_classes=[user_class], events=Events(), stop_timeout=None)
    try:
        runner = env.create_master_runner(master_bind_host=host, master_bind_port=port)
    except Exception as exc:  # zmq's bind error: taken, or not this machine's address
        return {"stages": [], "error": f"cannot listen for load-generator workers on "
                                       f"{host}:{port}: {exc}", **info}
    control = RemoteControl(runner, expected, recorder,
                            plan.timing.drain_timeout_s)
    meter = DistributedMeter(ResourceMeter(list(spec.get("watch_pids", []))), control)
    log_dir = Path(plan.log_dir or out_dir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _start_workers(procs, plan, host, port, workers, log_dir)
        _await_workers(runner, procs, expected, remote, f"{host}:{port}", log_dir)
        clients = sorted(runner.clients)
        if len(clients) > expected:
            raise StageError(f"{len(clients)} load-generator workers connected to "
                             f"{host}:{port}, {expected} expected: stop the extra ones")
        # Every worker builds its users from the plan before any is asked to spawn one.
        if not _send_plan(runner, control, clients, plan.for_workers().to_json()):
            raise StageError(f"{expected - len(control.ready)} of {expected} load-generator "
                             f"workers did not take the plan within {PLAN_TIMEOUT_S:.0f} s")
        info["workers"] = [control.ready[c] for c in clients]
        emit("ready", loadgen_workers=workers, loadgen_remote_workers=remote)
        # No cross-check: the master's Locust stats lag the workers' reports.
        stages = StageRunner(LocustEngine(env, runner, crosscheck=False), control, recorder,
                             meter, out_dir, max(1, len(spec["cpus"])),
                             plan.timing)
        stages.loadgen_cores = max(1, len(plan.loadgen_cpus))
        stages.metrics_url = spec.get("metrics_url")
        stages.signal_handler = on_sigterm(stages)
        error = run_trials(stages, plan.program)
        if error is not None:
            info["error"] = error
        return {"stages": stages.reports(), "target_in_loadgen": False, **info}
    except StageError as exc:
        return {"stages": [], "error": str(exc), **info}
    finally:
        runner.quit()
        runner.server.close(linger=1000)  # free the port for the next target's master
        _stop_workers(procs)


def _start_workers(procs: list[subprocess.Popen[bytes]], plan: Plan, host: str, port: int,
                   workers: int, log_dir: Path) -> None:
    """This machine's worker processes, each logging to its own file, appended to
    ``procs`` as each starts (so those started are stopped even if a later one fails)."""
    local_host = "127.0.0.1" if host in ("0.0.0.0", "*", "::") else host
    cpus = ",".join(str(c) for c in plan.loadgen_cpus)
    for i in range(workers):
        path = log_dir / f"loadgen-{plan.target}-worker-{i}.log"
        with path.open("ab") as log:
            # child_env: each worker dies with this driver (PR_SET_PDEATHSIG).
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "harness.loadgen.swarm.worker", "--master",
                 f"{local_host}:{port}", "--cpus", cpus, "--local"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=child_env({"PYTHONUNBUFFERED": "1"}), start_new_session=True))


def _await_workers(runner: Any, procs: list[subprocess.Popen[bytes]], expected: int,
                   remote: int, address: str, log_dir: Path) -> None:
    """Wait until ``expected`` workers are connected; StageError when they are not in
    time or a local one died. Says every 5 s what it waits for remote workers."""
    import gevent

    started = time.monotonic()
    timeout = REMOTE_CONNECT_TIMEOUT_S if remote else WORKER_CONNECT_TIMEOUT_S
    noted = 0.0
    while runner.worker_count < expected:
        waited = time.monotonic() - started
        if waited > timeout or any(p.poll() is not None for p in procs):
            port = address.rpartition(":")[2]
            where = (f" ({remote} expected from `deploybench loadgen-worker --master "
                     f"HOST:{port}` elsewhere)" if remote else "")
            raise StageError(f"only {runner.worker_count} of {expected} load-generator "
                             f"workers connected to {address} in {waited:.0f} s"
                             f"{where}; see {log_dir}/loadgen-*-worker-*.log")
        if remote and waited - noted >= 5.0:
            noted = waited
            emit("waiting", connected=runner.worker_count, expected=expected, master=address)
        gevent.sleep(0.05)


def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """By PID: SIGTERM, then SIGKILL after 5 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _send_plan(runner: Any, control: RemoteControl, clients: list[str],
               plan: dict[str, Any]) -> bool:
    """Send each worker the plan (with its index) until it says it took it, at most
    PLAN_TIMEOUT_S. Sent again every PLAN_RESEND_S: a worker counts as connected a moment
    before it has registered its handler for the plan, and Locust drops a message it has
    no handler for ("Unknown message type received: db_plan")."""
    import gevent

    sent: dict[str, float] = {}
    deadline = time.monotonic() + PLAN_TIMEOUT_S
    while len(control.ready) < len(clients):
        now = time.monotonic()
        if now > deadline:
            return False
        for index, client_id in enumerate(clients):
            if client_id not in control.ready and now - sent.get(client_id, -math.inf) \
                    >= PLAN_RESEND_S:
                runner.send_message(PLAN, {"plan": plan, "index": index}, client_id)
                sent[client_id] = now
        gevent.sleep(0.05)
    return True


