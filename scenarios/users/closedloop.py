"""What every prediction user shares: a drain flag, examples in turn, and the two ways of
sending: a closed loop (the next request as soon as the last answers) or, in an open-loop
stage, the stage's single user running the arrival schedule of :mod:`scenarios.openloop`.

Each protocol's user implements :meth:`LoadUserMixin.send`: one request, timed, reported
through Locust's request event (with ``context["intended"]`` in open loop, so the
harness's recorder counts the latency from the intended send time).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import gevent
from locust import constant

from scenarios.control import LoadControl

#: How long a draining user naps between checks; it sends nothing meanwhile.
IDLE_S = 0.01


class LoadUserMixin:
    """Mixed into a Locust ``User`` subclass; the driver sets ``control`` and ``_ids``."""

    wait_time = constant(0)  # closed loop: the next request as soon as the last answers
    control: ClassVar[LoadControl]
    _ids: ClassVar[itertools.count[int]]

    def on_start(self) -> None:
        # Users start at different examples so the mix is the same at every concurrency.
        self._next = next(self._ids)

    def items(self) -> Sequence[Any]:
        """The pre-encoded requests this user sends in turn."""
        raise NotImplementedError

    def send(self, item: Any, intended: float | None = None, queued: bool = False) -> None:
        """Send one request and report it (``intended``: its open-loop send time)."""
        raise NotImplementedError

    def next_item(self) -> Any:
        items = self.items()
        item = items[self._next % len(items)]
        self._next += 1
        return item

    def step(self) -> None:
        """One turn of the user's task."""
        if self.control.draining:
            gevent.sleep(IDLE_S)
            return
        if self.control.open_loop is not None:
            self.control.open_loop.drive(self)  # returns once the stage drains
            return
        self.send(self.next_item())

    @staticmethod
    def request_context(intended: float | None, queued: bool) -> dict[str, Any]:
        return {} if intended is None else {"intended": intended, "queued": queued}
