"""In-process user: hands each request to the embedded model's real threads.

See :class:`targets.inprocess.EmbeddedModel` for why the model runs in real OS threads
and what the latency includes.
"""

from __future__ import annotations

import itertools
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
        with self.timed("inprocess", "predict", intended, queued) as call:
            if len(self.app.predict(item)) != len(item):
                call.failure = RuntimeError("wrong number of predictions")


def make_user(spec: dict[str, Any], control: LoadControl) -> tuple[type[InProcessUser],
                                                                   EmbeddedModel]:
    app = EmbeddedModel(spec["bundle"], list(spec["cpus"]), int(spec["threads"]))
    attrs = {"abstract": False, "app": app, "control": control, "_ids": itertools.count()}
    return type("InProcessPredict", (InProcessUser,), attrs), app
