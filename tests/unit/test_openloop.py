"""The open-loop schedule: seeded arrivals, never early, backlog marked as queued."""

from __future__ import annotations

import time
from itertools import islice
from typing import Any

import gevent
import pytest

from harness.loadgen.control import LoadControl
from harness.loadgen.swarm.openloop import OpenLoop


class FakeUser:
    """Records each send; answers after ``service_s`` (a gevent sleep)."""

    def __init__(self, service_s: float) -> None:
        self.control = LoadControl()
        self.service_s = service_s
        self.sends: list[tuple[float, float, bool]] = []

    def next_item(self) -> int:
        return 0

    def send(self, item: Any, intended: float, queued: bool) -> None:
        self.sends.append((intended, time.time(), queued))
        gevent.sleep(self.service_s)


def drive(loop: OpenLoop, user: FakeUser, seconds: float) -> None:
    def stop() -> None:
        gevent.sleep(seconds)
        user.control.draining = True

    gevent.joinall([gevent.spawn(loop.drive, user), gevent.spawn(stop)])
    loop.stop()


def test_poisson_schedule_is_seeded_and_never_early() -> None:
    a, b = OpenLoop(500, "poisson", 64, seed=3), OpenLoop(500, "poisson", 64, seed=3)
    assert list(islice(a.schedule.gaps(), 50)) == list(islice(b.schedule.gaps(), 50))
    other = OpenLoop(500, "poisson", 64, 4).schedule.gaps()
    assert list(islice(a.schedule.gaps(), 50)) != list(islice(other, 50))
    user = FakeUser(0.001)
    loop = OpenLoop(500, "poisson", 64, seed=3)
    drive(loop, user, 0.4)
    assert 120 <= len(user.sends) <= 280  # ~200 expected
    # Sent at or after the intended time (a microsecond of clock-reading slack).
    assert all(sent >= intended - 1e-4 for intended, sent, _ in user.sends)
    assert not any(queued for *_, queued in user.sends)


def test_constant_spacing() -> None:
    loop = OpenLoop(100, "constant", 8, seed=0)
    gaps = loop.schedule.gaps()
    assert [next(gaps) for _ in range(3)] == pytest.approx([0.01, 0.01, 0.01])


def test_a_full_pool_marks_the_whole_backlog_queued() -> None:
    # 2 slots, each request takes 50 ms, 400 arrivals/s: after the first two, every
    # arrival waits for a slot (the target's fault, not the load generator's).
    user = FakeUser(0.05)
    loop = OpenLoop(400, "constant", 2, seed=0)
    drive(loop, user, 0.3)
    flags = [queued for *_, queued in user.sends]
    assert flags[:2] == [False, False]
    assert all(flags[2:])
    # Arrivals due before the stage ended but never sent are counted.
    first = user.sends[0][0]
    assert loop.unsent(first, first + 0.3) > 50


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        OpenLoop(0, "poisson", 1, seed=0)
