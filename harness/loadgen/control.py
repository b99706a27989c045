"""Shared state between the driver and its users: what is in flight, and the drain flag."""

from __future__ import annotations

import itertools
from typing import Any


class LoadControl:
    """Users check ``draining`` before each request and register what they have in flight.

    At the end of a stage the driver sets ``draining``; users stop sending, the driver
    waits until nothing is in flight and only then stops them, so no request is cut off
    mid-flight (Locust kills users immediately, dropping exactly the slowest requests).
    A request still unanswered when the drain times out is known by its send time (its
    intended send time, in open loop) and is recorded as a failure, never silently lost.

    ``open_loop`` is set for an open-loop stage: the stage's one user then runs its
    arrival schedule instead of sending in a closed loop.
    """

    def __init__(self) -> None:
        self.draining = False
        #: Send time (wall clock, as Locust's ``start_time``) of each request in flight.
        self.inflight: dict[int, float] = {}
        #: Users that have had a good answer this stage, and failures per user.
        self.answered: set[int] = set()
        self.failures: dict[int, int] = {}
        self.open_loop: Any = None
        self._keys = itertools.count()

    def reset(self) -> None:
        self.draining = False
        self.inflight.clear()
        self.answered.clear()
        self.failures.clear()
        self.open_loop = None

    def begin(self, sent_at: float) -> int:
        """Register a request in flight; returns its key for :meth:`end`."""
        key = next(self._keys)
        self.inflight[key] = sent_at
        return key

    def end(self, key: int, user: int, ok: bool = True) -> None:
        self.inflight.pop(key, None)
        if ok:
            self.answered.add(user)
        else:
            self.failures[user] = self.failures.get(user, 0) + 1

    def drained(self) -> bool:
        """Nothing in flight: every request sent has been answered."""
        return not self.inflight

    def unanswered(self) -> list[float]:
        """Send times of the requests still in flight (at the drain timeout)."""
        return list(self.inflight.values())

    def settled(self) -> int:
        """Users past their first request: one good answer, or failing steadily (3
        failures: a broken target must not hold the warm-up to its limit)."""
        return len(self.answered | {k for k, n in self.failures.items() if n >= 3})
