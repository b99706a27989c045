"""In-process user: hands each request to the embedded model's real threads.

See :class:`targets.inprocess.EmbeddedModel` for why the model runs in real OS threads
and what the latency includes.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

from locust import User, task

from scenarios.control import LoadControl
from scenarios.users.closedloop import LoadUserMixin
from targets.inprocess import EmbeddedModel


class InProcessUser(LoadUserMixin, User):
    abstract = True
    app: ClassVar[EmbeddedModel]

    @task
    def predict(self) -> None:
        self.step()

    def items(self) -> list[Any]:
        return self.app.examples

    def send(self, item: Any, intended: float | None = None, queued: bool = False) -> None:
        control = self.control
        exception: BaseException | None = None
        start_time = time.time()
        key = control.begin(intended if intended is not None else start_time)
        started = time.perf_counter()
        try:
            if len(self.app.predict(item)) != len(item):
                exception = RuntimeError("wrong number of predictions")
        except Exception as exc:  # a failure is a row in the stats, never a crash
            exception = exc
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            control.end(key, id(self), exception is None)
        self.environment.events.request.fire(
            request_type="inprocess", name="predict", response_time=elapsed_ms,
            response_length=0, exception=exception, context=self.request_context(intended, queued),
            start_time=start_time,
        )


def make_user(spec: dict[str, Any], control: LoadControl) -> tuple[type[InProcessUser],
                                                                   EmbeddedModel]:
    app = EmbeddedModel(spec["bundle"], list(spec["cpus"]), int(spec["threads"]))
    attrs = {"abstract": False, "app": app, "control": control, "_ids": itertools.count()}
    return type("InProcessPredict", (InProcessUser,), attrs), app
