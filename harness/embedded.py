"""The in-process driver: the application that embeds the model, measured from inside.

``python -m harness.driver PLAN.json`` runs this for the ``inprocess`` target, in a
process without Locust or gevent. There is no network to cross, so there is no client
either: the driver *is* the application. Its request handlers are OS threads pinned to
the target CPUs (torch with one intra-op thread, as every served worker), and each one
calls the bundle directly (:func:`targets.bundle.serve_batch`), timing the call with
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

The stage loop (:mod:`harness.stages`) is the one Locust's driver runs, with this
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
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from harness.recorder import MAX_ERROR_KINDS, Columns
from harness.stages import StageError, StageRunner, emit, run_trials
from scenarios.schedule import ArrivalSchedule

#: Fields of one packed sample, in order (no cold starts in-process).
FIELDS = ("start_s", "latency_ms", "ok", "send_delay_ms", "queued")
_WIDTH = len(FIELDS)
IDLE, CLOSED, OPEN = "idle", "closed", "open"


class HandlerRecorder:
    """The samples of many handler threads, recorded without a lock on the hot path.

    Each handler thread appends one packed record per request to an array of its own
    (``array.extend`` of a tuple of floats is one C call made holding the GIL, so a record
    is never torn, and no two threads append to one array). The driver's thread takes in
    what is new when it reads the length (a slice of an array is a copy, so a handler can
    go on appending), in chunks sorted by completion time; a window's scan starts at the
    chunk taken at the previous edge (:meth:`scan_start`).
    """

    #: After a window's edge is stamped, how long a handler that stamped its answer just
    #: before it gets to append it, before the driver takes the samples in.
    SETTLE_S = 0.002

    def __init__(self) -> None:
        #: Guards the list of slots, the take-in and the error counts (never a record).
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.closed = False
            self._slots: list[array[float]] = []
            self._taken: list[int] = []
        self._chunks: list[np.ndarray] = []
        self._starts: list[int] = []
        self._length = 0
        self.error_kinds: Counter[str] = Counter()

    def slot(self) -> array[float]:
        """A new array for one handler thread's records (taken at each activation)."""
        slot: array[float] = array("d")
        with self._lock:
            self._slots.append(slot)
            self._taken.append(0)
        return slot

    def failed(self, exc: BaseException) -> None:
        kind = f"{type(exc).__name__}: {exc}"[:200]
        with self._lock:
            if kind in self.error_kinds or len(self.error_kinds) < MAX_ERROR_KINDS:
                self.error_kinds[kind] += 1
            else:
                self.error_kinds["other"] += 1

    def _take(self, close: bool = False) -> set[float]:
        """Take in what the handlers recorded since the last call (and with ``close``,
        ignore whatever they record after it). Returns the send time of each thread's
        last record: a request it may still show as in flight."""
        lasts: set[float] = set()
        with self._lock:
            if self.closed:
                return lasts
            parts = []
            for i, slot in enumerate(self._slots):
                end = len(slot) - len(slot) % _WIDTH
                if end > self._taken[i]:
                    parts.append(np.frombuffer(slot[self._taken[i]:end], dtype=np.float64))
                    self._taken[i] = end
                if close and end:
                    lasts.add(slot[end - _WIDTH])
            self.closed = close
        if parts:
            chunk = np.concatenate(parts).reshape(-1, _WIDTH)
            done = chunk[:, 0] + chunk[:, 1] / 1000.0
            self._add(chunk[np.argsort(done, kind="stable")])
        return lasts

    def _add(self, chunk: np.ndarray) -> None:
        self._starts.append(self._length)
        self._chunks.append(chunk)
        self._length += len(chunk)

    def settle(self) -> None:
        """At a window's edge, before the length is read: see SETTLE_S."""
        time.sleep(self.SETTLE_S)

    def scan_start(self, cursor: int) -> int:
        """Where a window's scan begins: the chunk taken at the previous edge, whole. Its
        records appended just after that edge may have completed after it, and a chunk is
        sorted by completion, not appended in that order across threads."""
        starts = [at for at in self._starts if at < cursor]
        return starts[-1] if starts else 0

    def __len__(self) -> int:
        """How many samples there are, once what the handlers recorded is taken in."""
        self._take()
        return self._length

    def close(self, in_flight: list[float]) -> list[float]:
        """Everything recorded so far is taken in; later records are ignored (an answer
        to a request already counted as unanswered would count twice). ``in_flight`` is
        the send times of the requests the threads showed as unanswered just before:
        those of them recorded by now were answered in between. The rest are returned."""
        recorded = self._take(close=True)
        return [sent for sent in in_flight if sent not in recorded]

    def record_unanswered(self, sent_at: float, waited_ms: float, reason: str) -> None:
        self._add(np.array([[sent_at, waited_ms, 0.0, 0.0, 0.0]]))
        with self._lock:
            self.error_kinds[reason] += 1

    def columns(self, begin: int = 0, end: int | None = None) -> Columns:
        """Samples ``[begin:end)`` of those taken in (copies)."""
        end = self._length if end is None else end
        parts, at = [], 0
        for chunk in self._chunks:
            lo, hi = max(begin - at, 0), min(end - at, len(chunk))
            if lo < hi:
                parts.append(chunk[lo:hi])
            at += len(chunk)
        rows = np.concatenate(parts) if parts else np.zeros((0, _WIDTH))
        if len(parts) > 1 and begin == 0 and end == self._length:
            self._chunks, self._starts = [rows], [0]  # read whole: keep it as one chunk
        return Columns(rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2] != 0,
                       np.zeros(len(rows), dtype=bool), rows[:, 3].copy(), rows[:, 4] != 0)


class AppControl:
    """What is in flight, per handler thread, and the drain flag: the stage loop's view
    of the application (as :class:`scenarios.control.LoadControl` is of Locust's users).
    Each list entry is written by its own thread only."""

    def __init__(self) -> None:
        self.draining = False
        self.open_loop: ThreadOpenLoop | None = None
        #: Per handler thread: the send time (the intended one in open loop) of the
        #: request it is serving, or None.
        self.busy: list[float | None] = []
        self.answered: list[bool] = []
        self.failures: list[int] = []

    def grow(self, threads: int) -> None:
        while len(self.busy) < threads:
            self.busy.append(None)
            self.answered.append(False)
            self.failures.append(0)

    def reset(self) -> None:
        self.draining = False
        self.open_loop = None
        for k in range(len(self.busy)):
            self.busy[k] = None
            self.answered[k] = False
            self.failures[k] = 0

    def drained(self) -> bool:
        return all(sent is None for sent in self.busy)

    def unanswered(self) -> list[float]:
        return [sent for sent in self.busy if sent is not None]

    def settled(self) -> int:
        """Users past their first request: a good answer, or failing steadily."""
        return sum(1 for ok, n in zip(self.answered, self.failures, strict=True)
                   if ok or n >= 3)


class ThreadOpenLoop:
    """One open-loop stage's schedule, taken arrival by arrival by the handler threads."""

    def __init__(self, rate: float, arrival: str, max_inflight: int, seed: int,
                 recorder: HandlerRecorder) -> None:
        self.schedule = ArrivalSchedule(rate, arrival, seed)
        self.rate = rate
        self.max_inflight = max_inflight
        self.recorder = recorder
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._offsets: Iterator[float] | None = None
        self.wall0 = self.mono0 = 0.0

    def begin(self) -> None:
        """The schedule starts now (the stage's users have just been started)."""
        with self._lock:
            self.wall0, self.mono0 = time.time(), time.perf_counter()
            self._offsets = self.schedule.offsets()

    def take(self) -> tuple[float, float]:
        """The next arrival: (due on perf_counter, intended wall-clock time)."""
        with self._lock:
            assert self._offsets is not None, "begin() first"
            offset = next(self._offsets)
        return self.mono0 + offset, self.wall0 + offset

    def stop(self) -> None:
        """Wake every thread waiting for an arrival: none of them is sent."""
        self.stopped.set()

    def unsent(self, start: float, end: float) -> int:
        """Arrivals due in [start, end) never sent: every one sent has a sample (answered,
        failed or given up on at the drain), filed under its intended time."""
        if self._offsets is None:
            return 0
        due = self.schedule.due_in(self.wall0, start, end, 0)
        start_s = self.recorder.columns().start_s
        return max(0, due - int(((start_s >= start) & (start_s < end)).sum()))


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
                 reference: list[list[dict[str, Any]]] | None = None) -> None:
        import torch

        from targets.bundle import get_bundle, serve_batch

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

    def merged_stats(self, windows: list[Any], span_s: float) -> dict[str, Any]:
        return {}

    def total_stats(self, span_s: float) -> dict[str, Any]:
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
        from targets.bundle import Prediction, compare_predictions

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
        from targets.bundle import Prediction, compare_predictions

        examples = self.examples if k == 0 else [self.examples[k % len(self.examples)]]
        answers = [self.serve(self.bundle, example) for example in examples]
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

    def _answered(self, k: int, error: BaseException | None) -> None:
        if error is None:
            self.control.answered[k] = True
        else:
            self.control.failures[k] += 1
            self.recorder.failed(error)


def run(plan: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The plan's stages against the embedded model; the driver's result document."""
    from harness.resources import ResourceMeter

    spec = plan["spec"]
    # Before torch is imported: the driver's own memory, not the model's.
    rss_before_model = ResourceMeter([]).memory().loadgen_rss_mb
    app = Application(spec["bundle"], list(spec["cpus"]), plan.get("reference"))
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
                         max(1, len(spec["cpus"])), plan["timing"])
    # The handler runs in this thread between two bytecodes, possibly while it holds the
    # stop event's lock: the event is set from a thread of its own.
    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(
        target=stages.terminate, name="deploybench-sigterm", daemon=True).start())
    error = run_trials(stages, plan["program"])
    app.stop()
    result: dict[str, Any] = {"stages": stages.results, "target_in_loadgen": True, **extra}
    if error is not None:
        result["error"] = error
    return result
