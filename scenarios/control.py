"""Shared state between the driver and its users: what is in flight, and the drain flag."""

from __future__ import annotations


class LoadControl:
    """Users check ``draining`` before each request and register what they have in flight.

    At the end of a stage the driver sets ``draining``; users stop sending, the driver
    waits until nothing is in flight and only then stops them, so no request is cut off
    mid-flight (Locust kills users immediately, dropping exactly the slowest requests).
    A request still unanswered when the drain times out is known by its send time and is
    recorded as a failure, never silently lost.
    """

    def __init__(self) -> None:
        self.draining = False
        #: Send time (wall clock, as Locust's ``start_time``) of each user's request in flight.
        self.inflight: dict[int, float] = {}
        #: Users that have had at least one answer (or failure) this stage.
        self.answered: set[int] = set()

    def reset(self) -> None:
        self.draining = False
        self.inflight.clear()
        self.answered.clear()

    def begin(self, key: int, sent_at: float) -> None:
        self.inflight[key] = sent_at

    def end(self, key: int) -> None:
        self.inflight.pop(key, None)
        self.answered.add(key)
