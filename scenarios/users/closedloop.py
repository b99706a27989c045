"""What every prediction user shares: closed loop, a drain flag, examples in turn."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import ClassVar, TypeVar

import gevent
from locust import constant

from scenarios.control import LoadControl

T = TypeVar("T")

#: How long a draining user naps between checks; it sends nothing meanwhile.
IDLE_S = 0.01


class ClosedLoopMixin:
    """Mixed into a Locust ``User`` subclass; the driver sets ``control`` and ``_ids``."""

    wait_time = constant(0)  # closed loop: the next request as soon as the last answers
    control: ClassVar[LoadControl]
    _ids: ClassVar[itertools.count[int]]

    def on_start(self) -> None:
        # Users start at different examples so the mix is the same at every concurrency.
        self._next = next(self._ids)

    def next_item(self, items: Sequence[T]) -> T | None:
        """The next example to send, or None (after a nap) once the stage is draining."""
        if self.control.draining:
            gevent.sleep(IDLE_S)
            return None
        item = items[self._next % len(items)]
        self._next += 1
        return item
