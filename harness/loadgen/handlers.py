"""What the in-process driver's handler threads share with its stage loop
(:mod:`harness.loadgen.embedded`): their records (:class:`HandlerRecorder`), what each has in
flight (:class:`AppControl`) and an open-loop stage's schedule (:class:`ThreadOpenLoop`).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterator

import numpy as np

from harness.loadgen.recorder import MAX_ERROR_KINDS, Columns
from scenarios.schedule import ArrivalSchedule

#: Fields of one packed sample, in order (no cold starts in-process).
FIELDS = ("start_s", "latency_ms", "ok", "send_delay_ms", "queued")
_WIDTH = len(FIELDS)


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
    of the application (as :class:`harness.loadgen.control.LoadControl` is of Locust's users).
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
