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
from scenarios.users.closedloop import ClosedLoopMixin
from targets.inprocess import EmbeddedModel


class InProcessUser(ClosedLoopMixin, User):
    abstract = True
    app: ClassVar[EmbeddedModel]

    @task
    def predict(self) -> None:
        batch = self.next_item(self.app.examples)
        if batch is None:
            return
        control = self.control
        key = id(self)
        exception: BaseException | None = None
        start_time = time.time()
        control.begin(key, start_time)
        started = time.perf_counter()
        try:
            if len(self.app.predict(batch)) != len(batch):
                exception = RuntimeError("wrong number of predictions")
        except Exception as exc:  # a failure is a row in the stats, never a crash
            exception = exc
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            control.end(key, exception is None)
        self.environment.events.request.fire(
            request_type="inprocess", name="predict", response_time=elapsed_ms,
            response_length=0, exception=exception, context={}, start_time=start_time,
        )


def make_user(spec: dict[str, Any], control: LoadControl) -> tuple[type[InProcessUser],
                                                                   EmbeddedModel]:
    app = EmbeddedModel(spec["bundle"], list(spec["cpus"]), int(spec["threads"]))
    attrs = {"abstract": False, "app": app, "control": control, "_ids": itertools.count()}
    return type("InProcessPredict", (InProcessUser,), attrs), app
