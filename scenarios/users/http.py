"""HTTP prediction user: Locust's FastHttpUser (geventhttpclient, keep-alive).

FastHttpUser is 4-6x cheaper per request than HttpUser (Locust's docs; ~65 us against
~300 us in a no-work loopback test here), so it is the one to use when the server answers
in well under a millisecond. Sending this project's prediction requests, the whole load
generator process costs ~0.2 ms of CPU per request on this machine class (each stage
records it as ``loadgen_cpu_ms_per_request``): one load-generator core drives ~5k req/s.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

from locust import task
from locust.contrib.fasthttp import FastHttpUser

from scenarios.control import LoadControl
from scenarios.users.closedloop import LoadUserMixin
from targets.codec import RESPONSE_PREFIX


class HttpPredictUser(LoadUserMixin, FastHttpUser):
    abstract = True  # Locust's default max_retries = 0 stands: a retry would hide a failure
    path: ClassVar[str] = "/predict"
    payloads: ClassVar[list[tuple[bytes, dict[str, str]]]] = []
    #: A response header that marks an answer as a cold start (Lambda), or None.
    cold_header: ClassVar[str | None] = None

    @task
    def predict(self) -> None:
        self.step()

    def items(self) -> list[tuple[bytes, dict[str, str]]]:
        return self.payloads

    def send(self, item: tuple[bytes, dict[str, str]], intended: float | None = None,
             queued: bool = False) -> None:
        body, headers = item
        control = self.control
        ok = False
        key = control.begin(intended if intended is not None else time.time())
        try:
            # geventhttpclient sends bytes as is; Locust's annotation only says str.
            with self.client.request("POST", self.path, data=body,  # type: ignore[arg-type]
                                     headers=headers, name="predict", catch_response=True,
                                     context=self.request_context(intended, queued)) as response:
                if response.status_code == 200 and not response.content.startswith(
                        RESPONSE_PREFIX):
                    response.failure("200 without a predictions body")
                else:
                    ok = response.status_code == 200
                if self.cold_header and response.headers and \
                        response.headers.get(self.cold_header) is not None:
                    response.request_meta["context"]["cold"] = True
        finally:
            control.end(key, id(self), ok)


def make_user(spec: dict[str, Any], payloads: list[tuple[bytes, dict[str, str]]],
              control: LoadControl) -> type[HttpPredictUser]:
    attrs = {
        "abstract": False, "host": spec["url"], "path": spec.get("path", "/predict"),
        "payloads": payloads, "control": control, "_ids": itertools.count(),
        "cold_header": spec.get("cold_header"),
        # Connections this user may open, as it needs them (the pool is filled lazily): a
        # closed-loop user uses one; a stage's single open-loop user one per request in
        # flight, up to max_inflight.
        "concurrency": int(spec.get("max_inflight", 1)),
    }
    return type("HttpPredict", (HttpPredictUser,), attrs)
