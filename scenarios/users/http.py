"""HTTP prediction user: Locust's FastHttpUser (geventhttpclient, keep-alive).

FastHttpUser costs ~65 us of load-generator CPU per request against ~300 us for
HttpUser (measured here; Locust's docs say 5-6x), so it is the one to use when the
server answers in well under a millisecond.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from locust import task
from locust.contrib.fasthttp import FastHttpUser

from scenarios.control import LoadControl
from scenarios.users.closedloop import ClosedLoopMixin
from targets.codec import RESPONSE_PREFIX


class HttpPredictUser(ClosedLoopMixin, FastHttpUser):
    abstract = True
    max_retries = 0  # a retried request would hide a failure and double-count time
    path: ClassVar[str] = "/predict"
    payloads: ClassVar[list[tuple[bytes, dict[str, str]]]] = []

    @task
    def predict(self) -> None:
        payload = self.next_item(self.payloads)
        if payload is None:
            return
        body, headers = payload
        control = self.control
        control.inflight += 1
        try:
            # geventhttpclient sends bytes as is; Locust's annotation only says str.
            with self.client.request("POST", self.path, data=body,  # type: ignore[arg-type]
                                     headers=headers, name="predict",
                                     catch_response=True) as response:
                if response.status_code == 200 and not response.content.startswith(
                        RESPONSE_PREFIX):
                    response.failure("200 without a predictions body")
        finally:
            control.inflight -= 1


def make_user(spec: dict[str, Any], payloads: list[tuple[bytes, dict[str, str]]],
              control: LoadControl) -> type[HttpPredictUser]:
    attrs = {
        "abstract": False, "host": spec["url"], "path": spec.get("path", "/predict"),
        "payloads": payloads, "control": control, "_ids": itertools.count(),
    }
    return type("HttpPredict", (HttpPredictUser,), attrs)
