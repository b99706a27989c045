"""What every prediction user shares: a drain flag, examples in turn, and the two ways of
sending: a closed loop (the next request as soon as the last answers) or, in an open-loop
stage, the stage's single user running the arrival schedule of
:mod:`harness.loadgen.swarm.openloop`.

Each protocol's user implements :meth:`LoadUserMixin.send`: one request inside
``with self.timed(...) as call``, which times it, registers it in flight and reports it
through Locust's request event (with ``context["intended"]`` in open loop, so the
harness's recorder counts the latency from the intended send time).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar

import gevent
from locust import constant

from harness.loadgen.control import LoadControl
from targets.wire.codec import AnswerShape

#: How long a draining user naps between checks; it sends nothing meanwhile.
IDLE_S = 0.01


class Call:
    """One request being timed. The body sets ``failure`` (a wrong answer), ``length`` and
    ``context`` entries; an exception it raises is the failure. On exit the request leaves
    the in-flight register and is reported with its latency, so every protocol measures
    the same span: from just before the request is handed to the client to its answer."""

    __slots__ = ("context", "failure", "key", "length", "name", "request_type", "start_time",
                 "started", "user")

    def __init__(self, user: LoadUserMixin, request_type: str, name: str,
                 intended: float | None, queued: bool) -> None:
        self.user, self.request_type, self.name = user, request_type, name
        self.context: dict[str, Any] = (
            {} if intended is None else {"intended": intended, "queued": queued})
        self.failure: BaseException | None = None
        self.length = 0
        self.start_time = time.time()
        # In flight from its intended time in open loop (an unanswered request's wait).
        self.key = user.control.begin(intended if intended is not None else self.start_time)
        self.started = time.perf_counter()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        elapsed_ms = (time.perf_counter() - self.started) * 1000.0
        user = self.user
        if exc is not None and not isinstance(exc, Exception):
            # The user is being stopped (GreenletExit): nothing to report.
            user.control.end(self.key, id(user), False)
            return False
        if exc is not None:  # a failure is a row in the stats, never a crash
            self.failure = exc
        user.control.end(self.key, id(user), self.failure is None)
        user.environment.events.request.fire(
            request_type=self.request_type, name=self.name, response_time=elapsed_ms,
            response_length=self.length, exception=self.failure, context=self.context,
            start_time=self.start_time,
        )
        return True


class LoadUserMixin:
    """Mixed into a Locust ``User`` subclass; the driver sets ``control`` and ``_ids``."""

    wait_time = constant(0)  # closed loop: the next request as soon as the last answers
    control: ClassVar[LoadControl]
    _ids: ClassVar[itertools.count[int]]
    environment: Any  # Locust's User sets it

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

    def timed(self, request_type: str, name: str, intended: float | None, queued: bool
              ) -> Call:
        """``with self.timed(...) as call:`` around one request (see :class:`Call`)."""
        return Call(self, request_type, name, intended, queued)


def answer_shapes(spec: dict[str, Any], count: int) -> list[AnswerShape | None]:
    """What a well-formed answer to each of the ``count`` requests holds, from the plan
    (harness.loadgen.LoadJob.answers); None for each when the plan does not say."""
    answers = spec.get("answers")
    if answers is None:
        return [None] * count
    if len(answers) != count:
        raise ValueError(f"the plan gives {len(answers)} answer shapes for {count} requests")
    return [(int(rows), int(classes)) for rows, classes in answers]
