"""In-process user: the application calls the bundle directly, in real OS threads.

A torch forward pass never yields to gevent, so calling the model from a greenlet would
serialise every user and hide the queueing (Locust would time only the call). Instead
each user hands its request to a pool of real threads (``gevent.threadpool``: threads
the monkey-patching leaves real), one per target CPU, each pinned to the target CPUs
with one torch thread: the same CPU budget and thread layout as a served target's
workers. Latency runs from the hand-off to the answer, so it includes the wait for a
free thread, as an application's request would.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, ClassVar

import gevent
from gevent.threadpool import ThreadPool
from locust import User, task

from scenarios.control import LoadControl
from scenarios.users.closedloop import ClosedLoopMixin
from targets.bundle import Bundle, get_bundle, serve_batch


class InProcessApp:
    """The application embedding the model: a bundle and the threads that call it."""

    def __init__(self, bundle_name: str, cpus: list[int], threads: int) -> None:
        import torch

        torch.set_num_threads(1)  # one torch thread per pool thread
        self.cpus = cpus
        self.bundle: Bundle = get_bundle(bundle_name)
        started = time.perf_counter()
        self.bundle.load()
        self.examples = self.bundle.example_requests()
        serve_batch(self.bundle, self.examples[0])  # first call: lazy initialisation
        #: Model load and first prediction, in this already running process.
        self.load_s = time.perf_counter() - started
        self.pool = ThreadPool(threads)
        #: Native IDs of the pool threads: their CPU time is the target's.
        self.thread_ids: set[int] = set()

    def call(self, batch: Any) -> int:
        """Runs in a pool thread: pin it on first use, then serve the batch."""
        tid = threading.get_native_id()
        if tid not in self.thread_ids:
            os.sched_setaffinity(0, self.cpus)  # pid 0 = this thread only
            self.thread_ids.add(tid)
        return len(serve_batch(self.bundle, batch))

    def warm_threads(self) -> None:
        """Pin every pool thread before load, so CPU accounting sees all of them."""
        size = self.pool.maxsize
        results = [self.pool.spawn(self._pin_and_wait, size) for _ in range(size)]
        gevent.joinall(results)

    def _pin_and_wait(self, size: int) -> None:
        self.call(self.examples[0])
        # Hold this thread until every thread has taken a task, so each one is pinned.
        deadline = time.monotonic() + 5.0
        while len(self.thread_ids) < size and time.monotonic() < deadline:
            time.sleep(0.001)


class InProcessUser(ClosedLoopMixin, User):
    abstract = True
    app: ClassVar[InProcessApp]

    @task
    def predict(self) -> None:
        batch = self.next_item(self.app.examples)
        if batch is None:
            return
        control = self.control
        exception: BaseException | None = None
        control.inflight += 1
        start_time = time.time()
        started = time.perf_counter()
        try:
            if self.app.pool.apply(self.app.call, (batch,)) != len(batch):
                exception = RuntimeError("wrong number of predictions")
        except Exception as exc:  # a failure is a row in the stats, never a crash
            exception = exc
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            control.inflight -= 1
        self.environment.events.request.fire(
            request_type="inprocess", name="predict", response_time=elapsed_ms,
            response_length=0, exception=exception, context={}, start_time=start_time,
        )


def make_user(spec: dict[str, Any], control: LoadControl) -> tuple[type[InProcessUser],
                                                                   InProcessApp]:
    app = InProcessApp(spec["bundle"], list(spec["cpus"]), int(spec["threads"]))
    app.warm_threads()
    attrs = {"abstract": False, "app": app, "control": control, "_ids": itertools.count()}
    return type("InProcessPredict", (InProcessUser,), attrs), app
