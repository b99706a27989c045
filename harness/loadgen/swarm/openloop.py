"""Open-loop arrivals inside Locust: a schedule of intended send times, kept whatever the
answers do.

Locust is a closed-loop generator: a user waits for its answer before sending again, so
when the server stalls the requests that *should* have been sent are never sent nor
counted (coordinated omission: a 1 s freeze can leave p99 at 1 ms). Here one Locust user
runs the schedule: arrival i is due at ``t0 + offset_i`` (exponential gaps for Poisson
arrivals at the rate, equal gaps for constant spacing, from a seeded generator so every
run offers the same schedule), and each arrival is sent from its own greenlet, bounded by
``max_inflight`` requests in flight. Its latency is counted from its intended time, as
wrk2 does, so a stall shows up in every request scheduled during it.

Two things can make a request go out late, and they are told apart: the load generator
itself was busy (its CPU, the event loop: the stage is INVALID above 1% of requests,
"load generator fell behind"), or every in-flight slot was taken by requests the target
had not answered yet (``queued``: the target cannot carry the offered rate). An arrival
that found the slots full waits, and so does every arrival due before that wait ended:
the whole backlog is ``queued``, not blamed on the load generator.

The schedule (:class:`scenarios.schedule.ArrivalSchedule`) is kept on one clock
(``perf_counter``) and converted to wall-clock time once, as Locust stamps sends with
``time.time()``; no request is sent before it is due.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import gevent.pool

from scenarios.schedule import ArrivalSchedule

#: Give other greenlets a turn at least this often when catching up a late schedule.
YIELD_EVERY = 32


class OpenLoop:
    def __init__(self, rate: float, arrival: str, max_inflight: int, seed: int) -> None:
        self.schedule = ArrivalSchedule(rate, arrival, seed)
        self.rate = rate
        self.max_inflight = max_inflight
        self.sent = 0
        self.wall0: float | None = None
        self.pool: gevent.pool.Pool | None = None

    def drive(self, user: Any) -> None:
        """Send ``user``'s requests on the schedule until the stage drains."""
        control = user.control
        pool = self.pool = gevent.pool.Pool(self.max_inflight)
        wall0, mono0 = time.time(), time.perf_counter()
        self.wall0 = wall0
        backlog_until = -1.0  # offsets due before this waited for a slot
        for offset in self.schedule.offsets():
            due = mono0 + offset
            wait = due - time.perf_counter()
            if wait <= 0 and self.sent % YIELD_EVERY == 0:
                gevent.sleep(0)
            while wait > 0:  # a timer may fire a little early: never send before due
                gevent.sleep(wait)
                wait = due - time.perf_counter()
            if control.draining:
                return  # requests in flight finish; the driver's drain waits for them
            queued = offset < backlog_until
            if pool.full():
                pool.wait_available()
                queued = True
                backlog_until = time.perf_counter() - mono0
                if control.draining:
                    return
            pool.spawn(user.send, user.next_item(), wall0 + offset, queued)
            self.sent += 1

    def stop(self) -> None:
        """Kill requests still in flight (after the drain gave up on them), so none
        finishes during the next stage."""
        if self.pool is not None:
            self.pool.kill(block=True, timeout=5)

    def unsent(self, start: float, end: float) -> int:
        """Arrivals due in [start, end) (wall clock) that were never sent: the load
        generator fell so far behind that the stage ended first. They are late sends too."""
        if self.wall0 is None:
            return 0
        return self.schedule.due_in(self.wall0, start, end, self.sent)
