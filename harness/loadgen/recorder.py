"""The harness's own request listener: every request's start and latency, unrounded.

Locust buckets response times to whole milliseconds below 100 ms, which is useless for
an overhead-dominated model; this listener keeps each request's wall-clock start
(``time.time()``, as Locust passes it) and its latency as Locust measured it with
``perf_counter`` (a float in ms, sub-microsecond resolution), and whether it failed.
Percentiles are computed from these raw samples by the harness, never from Locust's
buckets, which are kept only as a cross-check.

Open-loop requests carry their *intended* send time in the request's context: the
recorder then files the request under that time and counts its latency from it (wrk2's
correction for coordinated omission), and keeps how late it was actually sent.
"""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Any, NamedTuple

import numpy as np

#: Distinct error messages kept per stage; the rest are counted under "other".
MAX_ERROR_KINDS = 20
#: Answers before a window's first new one that its scan takes in too.
SCAN_OVERLAP = 256


class Columns(NamedTuple):
    """A stage's samples as numpy arrays, one element per request (see the module doc)."""

    start_s: np.ndarray
    latency_ms: np.ndarray
    ok: np.ndarray
    cold: np.ndarray
    send_delay_ms: np.ndarray
    queued: np.ndarray

    def to_npz(self) -> dict[str, np.ndarray]:
        return self._asdict()


class SampleRecorder:
    """Locust's request listener: one process, one event loop, so plain appends."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        #: Set once a stage's unanswered requests are recorded: a late answer to one of
        #: them must not be counted a second time.
        self.closed = False
        self.start_s = array("d")
        self.latency_ms = array("d")
        self.ok = array("b")
        #: 1 where the target said the answer came from a cold start (Lambda).
        self.cold = array("b")
        #: Open loop: how long after its intended time each request was sent (ms), and 1
        #: where it waited because every request slot was busy. 0 in closed loop.
        self.send_delay_ms = array("d")
        self.queued = array("b")
        self.error_kinds: Counter[str] = Counter()

    def on_request(self, request_type: str, name: str, response_time: float | None,
                   response_length: int, exception: BaseException | None = None,
                   start_time: float | None = None, context: dict[str, Any] | None = None,
                   **_: Any) -> None:
        """Listener for ``events.request``; cheap, because it runs once per request."""
        if self.closed:
            return
        if start_time is None or response_time is None:
            # A request Locust could not time is a failure we can still count.
            self.error_kinds["untimed request"] += 1
            return
        intended = context.get("intended") if context else None
        if intended is not None:
            # Never negative: the schedule and Locust's stamp are two readings of the
            # clock, and a request is never sent before it is due.
            delay_ms = max(0.0, (start_time - intended) * 1000.0)
            start_time = intended
            response_time += delay_ms
            self.send_delay_ms.append(delay_ms)
            self.queued.append(1 if context and context.get("queued") else 0)
        else:
            self.send_delay_ms.append(0.0)
            self.queued.append(0)
        self.start_s.append(start_time)
        self.latency_ms.append(response_time)
        self.cold.append(1 if context and context.get("cold") else 0)
        if exception is None:
            self.ok.append(1)
            return
        self.ok.append(0)
        kind = f"{type(exception).__name__}: {exception}"[:200]
        if kind in self.error_kinds or len(self.error_kinds) < MAX_ERROR_KINDS:
            self.error_kinds[kind] += 1
        else:
            self.error_kinds["other"] += 1

    def record_unanswered(self, sent_at: float, waited_ms: float, reason: str) -> None:
        """A request that never got an answer: a failure whose latency is at least ``waited_ms``."""
        self.start_s.append(sent_at)
        self.latency_ms.append(waited_ms)
        self.ok.append(0)
        self.cold.append(0)
        self.send_delay_ms.append(0.0)
        self.queued.append(0)
        self.error_kinds[reason] += 1

    def __len__(self) -> int:
        return len(self.latency_ms)

    def close(self, in_flight: list[float]) -> list[float]:
        """Answers from here on are ignored (an answer to a request about to be counted
        as unanswered would count twice); ``in_flight``, read just before in this event
        loop, is what is still unanswered."""
        self.closed = True
        return in_flight

    def settle(self) -> None:
        """Nothing to wait for at a window's edge: answers are recorded in this loop."""

    def scan_start(self, cursor: int) -> int:
        """Where a window's scan begins: a few answers before the previous edge's last
        (recorded a moment before the edge but stamped after it)."""
        return max(0, cursor - SCAN_OVERLAP)

    def columns(self, begin: int = 0, end: int | None = None) -> Columns:
        """Samples ``[begin:end)``, zero-copy but for the flags (read them before the
        event loop records more: a view pins the arrays' size)."""
        return Columns(
            np.frombuffer(self.start_s, dtype=np.float64)[begin:end],
            np.frombuffer(self.latency_ms, dtype=np.float64)[begin:end],
            np.frombuffer(self.ok, dtype=np.int8)[begin:end].astype(bool),
            np.frombuffer(self.cold, dtype=np.int8)[begin:end].astype(bool),
            np.frombuffer(self.send_delay_ms, dtype=np.float64)[begin:end],
            np.frombuffer(self.queued, dtype=np.int8)[begin:end].astype(bool),
        )
