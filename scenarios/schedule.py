"""An open-loop stage's arrival schedule: intended send times, whatever the answers do.

Arrival i is due at ``origin + offset_i``: exponential gaps for Poisson arrivals at the
rate, equal gaps for constant spacing, from a seeded generator, so every run (and every
target, whatever drives it: Locust's open-loop user or the in-process handler threads)
is offered the same schedule. Pure Python: no gevent, no threads.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


class ArrivalSchedule:
    def __init__(self, rate: float, arrival: str, seed: int) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.arrival = arrival
        self.seed = seed

    def gaps(self) -> Iterator[float]:
        """Seconds between consecutive arrivals, from the first (due one gap after the
        origin) on; the same sequence every time."""
        rng = random.Random(self.seed)
        while True:
            yield rng.expovariate(self.rate) if self.arrival == "poisson" else 1.0 / self.rate

    def offsets(self) -> Iterator[float]:
        """Each arrival's due time, in seconds after the origin."""
        offset = 0.0
        for gap in self.gaps():
            offset += gap
            yield offset

    def due_in(self, origin: float, start: float, end: float, sent: int) -> int:
        """Of the arrivals due in [start, end) (``origin`` and both bounds on one clock),
        how many are not among the first ``sent`` of the schedule."""
        due = done = 0
        for index, offset in enumerate(self.offsets()):
            at = origin + offset
            if at >= end:
                break
            if at >= start:
                due += 1
                done += index < sent
        return due - done
