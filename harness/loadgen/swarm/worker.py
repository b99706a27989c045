"""A load-generator worker: Locust's worker runner, serving one master's job (started by
it) or each target's master in turn (``deploybench loadgen-worker`` on another machine).
See :mod:`.master` for what the two say to each other."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

import psutil

from harness.loadgen.control import LoadControl
from harness.loadgen.protocol import Plan
from harness.loadgen.recorder import SampleRecorder
from harness.loadgen.stagekit import wait_until
from harness.loadgen.swarm.messages import (
    ARRAYS,
    DRAIN,
    DRAINED,
    PLAN,
    PUSH_INTERVAL_S,
    QUIT_GRACE_S,
    READY,
    RESET,
    SAMPLES,
    parse_master,
)
from harness.loadgen.swarm.users import build_user
from targets.runtimes.process import die_with_parent


def worker_main(master: str, cpus: list[int] | None, local: bool) -> int:
    """Serve the masters at ``master``: one job when started by a master (``local``);
    started by hand elsewhere, one job per target until the run's last, or until no
    master answers for Locust's connect timeout (5 minutes)."""
    host, port = parse_master(master)
    if local:
        die_with_parent()
    if cpus:
        os.sched_setaffinity(0, cpus)  # before Locust's import patches the process
    served = 0
    while True:
        outcome = _serve_one(host, port, local)
        if outcome == "no master":
            print(f"loadgen-worker: no master at {host}:{port}"
                  + (f" after {served} job(s); done" if served else ""), file=sys.stderr)
            return 0 if served else 1
        served += 1
        if local or outcome == "final":
            return 0
        time.sleep(QUIT_GRACE_S)  # let this master go before looking for the next


def _serve_one(host: str, port: int, local: bool) -> str:
    """One job: connect, take the plan, run the users the master asks for, report their
    samples; returns "final", "more" or "no master"."""
    from locust.env import Environment
    from locust.event import Events

    env = Environment(user_classes=[], events=Events(), stop_timeout=None)
    job = _Job(env, local)
    try:
        runner = env.create_worker_runner(host, port)
    except ConnectionError:
        return "no master"
    job.runner = runner
    runner.register_message(PLAN, job.on_plan)
    runner.register_message(RESET, job.on_reset)
    runner.register_message(DRAIN, job.on_drain, concurrent=True)
    runner.greenlet.join()
    for greenlet in job.pumps:  # not Locust's: it would push to the closed client
        greenlet.kill()
    runner.client.close()
    # Without a plan (the master gave up before sending one) the job was not this run's
    # last: "final" comes from the plan.
    return "final" if job.final else "more"


class _Job:
    """A worker's side of one master's job: the users it runs, the samples it records
    and pushes, and its answers to the master's messages."""

    def __init__(self, env: Any, local: bool) -> None:

        self.env, self.local = env, local
        self.control = LoadControl()
        self.recorder = SampleRecorder()
        env.events.request.add_listener(self.recorder.on_request)
        self.me = psutil.Process()
        self.runner: Any = None
        self.epoch, self.sent, self.index, self.final = 0, 0, -1, False
        self.pumps: list[Any] = []

    def push(self) -> None:
        """Send what was recorded since the last push (and this process's CPU time)."""
        start, end = self.sent, len(self.recorder)
        cpu = self.me.cpu_times()
        data: dict[str, Any] = {"epoch": self.epoch, "settled": self.control.settled(),
                                "cpu_s": cpu.user + cpu.system, "at": time.time(),
                                "index": self.index}
        for name, _code in ARRAYS:
            data[name] = getattr(self.recorder, name)[start:end].tolist()
        self.sent = end
        self.runner.send_message(SAMPLES, data)

    def pump(self) -> None:
        import gevent

        while True:
            gevent.sleep(PUSH_INTERVAL_S)
            self.push()

    def on_plan(self, environment: Any, msg: Any, **_: Any) -> None:
        import gevent

        if self.pumps:  # the master sent it again before our READY reached it: taken already
            return
        plan = Plan.from_json(msg.data["plan"])
        self.index, self.final = int(msg.data["index"]), plan.final
        self.env.user_classes = [build_user(plan.spec, self.control)]
        self.runner.send_message(READY, {"index": self.index, "host": socket.gethostname(),
                                         "pid": os.getpid(), "local": self.local,
                                         "at": time.time()})
        self.pumps.append(gevent.spawn(self.pump))

    def on_reset(self, environment: Any, msg: Any, **_: Any) -> None:
        self.control.reset()
        self.recorder.clear()
        self.epoch, self.sent = msg.data["epoch"], 0

    def on_drain(self, environment: Any, msg: Any, **_: Any) -> None:
        import gevent

        epoch = msg.data["epoch"]
        self.control.draining = True
        wait_until(gevent, lambda: not self.control.inflight, float(msg.data["timeout_s"]))
        if self.epoch != epoch:  # the master moved on (it gave up on this stage)
            return
        unanswered = list(self.control.inflight.values())
        self.recorder.closed = True  # a late answer now would count twice
        self.push()
        self.runner.send_message(DRAINED, {
            "epoch": epoch, "unanswered": unanswered,
            "error_kinds": dict(self.recorder.error_kinds), "index": self.index,
            # Its own count: answered, failed and unanswered.
            "samples": len(self.recorder) + len(unanswered)})


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.loadgen.swarm.worker --master HOST:PORT [--cpus 0,1] [--local]``; by
    hand, ``deploybench loadgen-worker`` runs the same."""
    parser = argparse.ArgumentParser(prog="python -m harness.loadgen.swarm.worker")
    parser.add_argument("--master", required=True, help="HOST:PORT of the master")
    parser.add_argument("--cpus", default="", help="CPUs to pin to, e.g. 0,1")
    parser.add_argument("--local", action="store_true",
                        help="started by the master: one job, and die with it")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cpus = [int(c) for c in args.cpus.split(",") if c]
    return worker_main(args.master, cpus or None, args.local)


if __name__ == "__main__":
    sys.exit(main())
