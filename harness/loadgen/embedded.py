"""The in-process driver: the application that embeds the model, measured from inside.

``python -m harness.loadgen.driver PLAN.json`` runs this for the ``inprocess`` target, in a
process without Locust or gevent. There is no network to cross, so there is no client
either: the driver *is* the application. Its request handlers are OS threads pinned to
the target CPUs (torch with one intra-op thread, as every served worker), and each one
calls the bundle directly (:func:`targets.bundles.protocol.serve_batch`), timing the call with
``perf_counter_ns``. No other scheduler sits between a request and the model, so what is
measured is the model's path, not a hand-off to it:

* **closed loop**, N users: N handler threads, each calling the model again as soon as
  its last call returned. On fewer CPUs than users they share the CPUs (and the GIL) as
  an application's N request threads would, so each call's latency includes its wait;
* **open loop**: up to ``max_inflight`` handler threads take the schedule's arrivals in
  order (:class:`scenarios.schedule.ArrivalSchedule`, the same seeded schedule Locust
  runs). A thread that took an arrival before it was due sleeps until then (its wake-up
  delay is the *send delay*; more than the tolerance is a *late* send); an arrival no
  thread was free for when it fell due waited for one (*queued*). Latency counts from
  the intended time either way, as in every open-loop stage;
* **timelines**: the segment's users are the threads allowed to send; a user leaving at
  an edge finishes the call it is in.

The stage loop (:mod:`harness.loadgen.stages`) is the one Locust's driver runs, with this
module's :class:`Application` as its engine. Per request the harness adds a handful of
list stores and one append of a packed record (about a microsecond on the target CPUs,
inside *target CPU*); the driver's own thread sleeps on the load-generator CPUs between
window edges. Parity is checked through the same handler code path, before any load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.loadgen.handlers import AppControl, HandlerRecorder, ThreadOpenLoop
from harness.loadgen.protocol import Plan
from harness.loadgen.resources import ResourceMeter
from harness.loadgen.stagekit import StageError, emit
from harness.loadgen.stages import StageRunner, run_trials
from reports.stageblocks import LocustCrossCheck
from targets.bundles.protocol import Prediction, compare_predictions, serve_batch
from targets.bundles.resolve import get_bundle
from targets.monitor import inprocess_monitor
from targets.monitoring import OFF, Monitoring

IDLE, CLOSED, OPEN = "idle", "closed", "open"


class _Killed(Exception):
    """Raised inside a helper thread's sleep once the helper is stopped."""


class HarnessClock:
    """CPU seconds of the driver's own threads: the one running the stage loop, and its
    helpers (a timeline's memory sampler), those that ended included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clocks = {threading.get_ident(): time.pthread_getcpuclockid(
            threading.get_ident())}
        self._ended_s = 0.0

    def add_current(self) -> None:
        with self._lock:
            self._clocks[threading.get_ident()] = time.pthread_getcpuclockid(
                threading.get_ident())

    def end_current(self) -> None:
        with self._lock:
            self._clocks.pop(threading.get_ident(), None)
            self._ended_s += time.thread_time()

    def __call__(self) -> float:
        with self._lock:
            return self._ended_s + sum(time.clock_gettime(c) for c in self._clocks.values())


class _Helper:
    """A helper thread of the driver (a timeline's memory sampler): stopped at its next
    :meth:`Application.sleep`."""

    def __init__(self, fn: Callable[[], None], local: threading.local,
                 clock: HarnessClock) -> None:
        self.killed = threading.Event()
        self._fn, self._local, self._clock = fn, local, clock
        self.thread = threading.Thread(target=self._run, name="deploybench-helper",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self._local.helper = self
        self._clock.add_current()
        try:
            with contextlib.suppress(_Killed):
                self._fn()
        finally:
            self._clock.end_current()

    def kill(self) -> None:
        self.killed.set()
        self.thread.join(timeout=5)


class Application:
    """The application embedding the model, and the stage loop's engine: handler threads
    started as the stages need them (one per closed-loop user, up to max_inflight in open
    loop), parked between stages."""

    crosscheck = False  # no Locust here: the samples are the only figures

    def __init__(self, bundle_name: str, cpus: list[int],
                 reference: list[list[dict[str, Any]]] | None = None,
                 monitoring: Monitoring = OFF, prediction_log_dir: str | None = None
                 ) -> None:
        import torch

        torch.set_num_threads(1)  # one torch thread per handler thread
        with contextlib.suppress(RuntimeError):  # settable only before first use
            torch.set_num_interop_threads(1)
        self.cpus = cpus
        self.serve = serve_batch
        self.bundle = get_bundle(bundle_name)
        started = time.perf_counter()
        self.bundle.load()
        self.examples = self.bundle.example_requests()
        serve_batch(self.bundle, self.examples[0])  # first call: lazy initialisation
        #: --metrics / --log-predictions: the application's own (None: off); the handler
        #: threads call through it (metrics in the default registry, which the stages'
        #: scraper reads; a background thread on the target CPUs logs).
        self.monitor = inprocess_monitor(monitoring, self.bundle, prediction_log_dir, cpus)
        if self.monitor is not None:
            self.serve = self.monitor.handle
        #: Model load and first prediction, in this already running process.
        self.load_s = time.perf_counter() - started
        self.reference = reference
        self.recorder = HandlerRecorder()
        self.control = AppControl()
        self._cond = threading.Condition()
        self._mode = IDLE
        self._active = 0  # closed loop: handler threads 0..active-1 send
        #: Bumped at the end of every stage: a thread still in a call from an earlier
        #: stage (past its drain timeout) finishes it and sends nothing more.
        self._generation = 0
        self._threads: list[threading.Thread] = []
        self._ready: list[threading.Event] = []
        #: Per handler thread, set at its start: parity of its first answer, or a problem.
        self._problems: dict[int, str] = {}
        self._local = threading.local()
        #: Open loop: the handler threads serving a request now (its length is what
        #: matters: list appends and pops are atomic), and when the last call ended.
        self._serving: list[int] = []
        self._last_done = 0.0
        #: CPU time of the driver's own threads: this one (the stage loop) and helpers.
        self.harness_cpu_s = HarnessClock()

    # -- the stage loop's engine ---------------------------------------------------------
    def start(self, users: int, all_at_once: bool = False) -> None:
        loop = self.control.open_loop
        count = loop.max_inflight if loop is not None else users
        self._ensure(count)
        if loop is not None:
            loop.begin()
        with self._cond:
            self._mode = OPEN if loop is not None else CLOSED
            self._active = count
            self._cond.notify_all()

    @property
    def user_count(self) -> int:
        if self._mode == OPEN:
            return 1  # one arrival process, as Locust's single open-loop user
        return self._active if self._mode == CLOSED else 0

    def stop(self) -> None:
        with self._cond:
            self._mode = IDLE
            self._active = 0
            self._generation += 1
        loop = self.control.open_loop
        if loop is not None:  # wake the threads waiting for an arrival: none is sent
            loop.stop()

    def reserve(self, users: int) -> None:
        """Have ``users`` handler threads started and checked now, not at a timeline's
        edge where starting them would take time from the segment being measured."""
        self._ensure(users)

    def sleep(self, seconds: float) -> None:
        helper = getattr(self._local, "helper", None)
        if helper is None:
            time.sleep(seconds)
        elif helper.killed.wait(seconds):
            raise _Killed

    def event(self) -> threading.Event:
        return threading.Event()

    def spawn(self, fn: Callable[[], None]) -> _Helper:
        return _Helper(fn, self._local, self.harness_cpu_s)

    def open_loop(self, rate: float, arrival: str, max_inflight: int, seed: int
                  ) -> ThreadOpenLoop:
        return ThreadOpenLoop(rate, arrival, max_inflight, seed, self.recorder)

    @contextlib.contextmanager
    def graceful(self, timeout_s: float) -> Iterator[None]:
        yield  # a thread told to stop always finishes the call it is in

    def reset_stats(self) -> None:
        pass

    def window_stats(self) -> Any:
        return None

    def merged_stats(self, windows: list[Any], span_s: float) -> LocustCrossCheck:
        return {}

    def total_stats(self, span_s: float) -> LocustCrossCheck:
        return {}

    # -- the handler threads -------------------------------------------------------------
    def _ensure(self, count: int) -> None:
        """Start handler threads up to ``count``, each pinned and checked before use."""
        first = len(self._threads)
        if count <= first:
            return
        self.control.grow(count)
        for k in range(first, count):
            ready = threading.Event()
            thread = threading.Thread(target=self._handler, args=(k, ready),
                                      name=f"handler-{k}", daemon=True)
            self._threads.append(thread)
            self._ready.append(ready)
            thread.start()
        for ready in self._ready[first:]:
            if not ready.wait(60.0):
                raise StageError("a handler thread did not start within 60 s")
        if self._problems:
            k, problem = min(self._problems.items())
            raise StageError(f"parity: handler thread {k} {problem}")

    def check_parity(self) -> dict[str, Any]:
        """Every example through handler thread 0, on the path the load then takes."""
        assert self.reference is not None
        self._ensure(1)
        got = self._first_answers
        worst = 0.0
        for index, expected in enumerate(self.reference):
            want = [Prediction(p["label"], tuple(p["probabilities"])) for p in expected]
            problem, diff = compare_predictions(want, got[index])
            if problem is not None:
                return {"ok": False, "index": index, "problem": problem}
            worst = max(worst, diff)
        return {"ok": True, "examples": len(self.reference), "max_abs_diff": worst,
                "reference": "the bundle called in the orchestrator's process, through "
                             "the in-process driver's handler threads"}

    def _handler(self, k: int, ready: threading.Event) -> None:
        os.sched_setaffinity(0, self.cpus)  # pid 0 = this thread only
        try:
            self._check(k)
        except Exception as exc:  # the model failed on an example: a parity problem
            self._problems[k] = f"failed on an example: {type(exc).__name__}: {exc}"
        finally:
            ready.set()
        while True:
            with self._cond:
                while not self._wanted(k):
                    self._cond.wait()
                mode, generation = self._mode, self._generation
            record = self.recorder.slot().extend
            if mode == CLOSED:
                self._closed(k, record, generation)
            else:
                self._open(k, record, generation)

    def _wanted(self, k: int) -> bool:
        return k < self._active and self._mode != IDLE and not self.control.draining

    def _check(self, k: int) -> None:
        """A new thread's first answers: thread 0 answers every example (the run's parity
        check), later ones their first, each compared with the reference."""
        examples = self.examples if k == 0 else [self.examples[k % len(self.examples)]]
        # Thread 0's is the run's parity check, served as a served target's is (counted
        # and logged, before the first stage's scrape); a later thread's check comes
        # inside a stage, so it bypasses the monitor: it is no user's request.
        serve = self.serve if k == 0 else serve_batch
        answers = [serve(self.bundle, example) for example in examples]
        if k == 0:
            self._first_answers = answers
        elif self.reference is not None:
            expected = self.reference[k % len(self.examples)]
            want = [Prediction(p["label"], tuple(p["probabilities"])) for p in expected]
            problem, _ = compare_predictions(want, answers[0])
            if problem is not None:
                self._problems[k] = problem

    def _closed(self, k: int, record: Callable[[tuple[float, ...]], None],
                generation: int) -> None:
        control, busy = self.control, self.control.busy
        bundle, serve, items = self.bundle, self.serve, self.examples
        clock, wall = time.perf_counter_ns, time.time
        j, n = k, len(items)  # users start at different examples: the same mix at any N
        while self._mode == CLOSED and k < self._active and self._generation == generation:
            item = items[j % n]
            j += 1
            busy[k] = sent = wall()
            if control.draining:  # checked after marking busy: the drain sees this call
                busy[k] = None
                return
            error: BaseException | None = None
            t0 = clock()
            try:
                if len(serve(bundle, item)) != len(item):
                    error = RuntimeError("wrong number of predictions")
            except Exception as exc:  # a failure is a sample, never a crash
                error = exc
            t1 = clock()
            # Recorded, then no longer busy: a drain's reading in between is reconciled
            # by HandlerRecorder.close (no lock here: the threads would queue on it
            # between calls, and the time they wait for the GIL would fall outside the
            # latency measured).
            record((sent, (t1 - t0) / 1e6, error is None, 0.0, 0.0))
            busy[k] = None
            self._answered(k, error)

    def _open(self, k: int, record: Callable[[tuple[float, ...]], None],
              generation: int) -> None:
        control, busy = self.control, self.control.busy
        loop = control.open_loop
        assert loop is not None
        bundle, serve, items = self.bundle, self.serve, self.examples
        clock, n, j = time.perf_counter, len(items), k
        serving = self._serving
        while self._mode == OPEN and not control.draining and not loop.stopped.is_set() \
                and self._generation == generation:
            due, intended = loop.take()
            # No thread was free when it fell due: it waited for one (the target's doing).
            queued = clock() > due
            while (left := due - clock()) > 0:  # never before it is due
                if loop.stopped.wait(left):
                    return
            busy[k] = intended
            if control.draining:
                busy[k] = None
                return
            item = items[j % n]
            j += 1
            # Late waking while the application served another request is its CPU (and
            # GIL) being busy: latency, not the driver's lateness, so not a late send.
            sent = clock()
            contended = bool(serving) or self._last_done > due
            serving.append(k)
            error: BaseException | None = None
            try:
                if len(serve(bundle, item)) != len(item):
                    error = RuntimeError("wrong number of predictions")
            except Exception as exc:
                error = exc
            done = self._last_done = clock()
            serving.pop()
            delay_ms = 0.0 if contended and not queued else max(0.0, sent - due) * 1000.0
            record((intended, (done - due) * 1000.0, error is None, delay_ms, queued))
            busy[k] = None  # after the record: see _closed
            self._answered(k, error)

    def close(self) -> None:
        """The application stops: its prediction log flushed."""
        if self.monitor is not None:
            self.monitor.close()

    def _answered(self, k: int, error: BaseException | None) -> None:
        if error is None:
            self.control.answered[k] = True
        else:
            self.control.failures[k] += 1
            self.recorder.failed(error)


def run(plan: Plan, out_dir: Path) -> dict[str, Any]:
    """The plan's stages against the embedded model; the driver's result document."""
    spec = plan.spec
    # Before torch is imported: the driver's own memory, not the model's.
    rss_before_model = ResourceMeter([]).memory().loadgen_rss_mb
    monitoring = Monitoring(**{k: v for k, v in spec.get("monitoring", {}).items()
                               if k in ("metrics", "log_rate")})
    app = Application(spec["bundle"], list(spec["cpus"]), plan.reference, monitoring,
                      spec.get("prediction_log_dir"))
    try:
        return _run(app, plan, out_dir, rss_before_model)
    finally:
        app.close()


def _run(app: Application, plan: Plan, out_dir: Path, rss_before_model: float
         ) -> dict[str, Any]:
    spec = plan.spec
    extra: dict[str, Any] = {"load_s": app.load_s, "rss_before_model_mb": rss_before_model}
    try:
        if app.reference is not None:
            parity = app.check_parity()
            extra["parity"] = parity
            if not parity["ok"]:
                return {"stages": [], "error": "parity", **extra}
    except StageError as exc:
        return {"stages": [], "error": str(exc), **extra}
    meter = ResourceMeter([], harness_cpu=app.harness_cpu_s)
    emit("ready", **{k: v for k, v in extra.items() if k != "parity"})
    stages = StageRunner(app, app.control, app.recorder, meter, out_dir,
                         max(1, len(spec["cpus"])), plan.timing)
    stages.metrics_url = spec.get("metrics_url")
    # The handler runs in this thread between two bytecodes, possibly while it holds the
    # stop event's lock: the event is set from a thread of its own.
    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(
        target=stages.terminate, name="deploybench-sigterm", daemon=True).start())
    error = run_trials(stages, plan.program)
    app.stop()
    result: dict[str, Any] = {"stages": stages.reports(), "target_in_loadgen": True, **extra}
    if error is not None:
        result["error"] = error
    return result
