"""HTTP prediction user: a Locust ``User`` on geventhttpclient's keep-alive client.

Locust's FastHttpUser is built on the same client (geventhttpclient), adding a session
layer (URL joining, header merging, a response context manager) that costs as much CPU
per request as the client itself: against the null HTTP server here, ~215 us of client
CPU per request through FastHttpUser's session against ~125 us calling the client
directly, and ~80 us more round trip at 1 user. For a load generator whose figures are
compared with wrk's, and whose ceiling bounds what it can measure, that is too dear, so
this user calls the client directly and reports each request through Locust's request
event itself, as Locust's documentation shows for any other client (and as the gRPC user
does). Connections are kept alive; nothing is retried (a retry would hide a failure).

A request fails on a transport error or timeout, a status other than 200, or a 200
without a predictions body. The whole load-generator process's CPU per request is
recorded by every stage as ``loadgen_cpu_ms_per_request``.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar
from urllib.parse import urlsplit

from geventhttpclient import HTTPClient
from locust import User, task

from scenarios.control import LoadControl
from scenarios.users.closedloop import LoadUserMixin
from targets.codec import RESPONSE_PREFIX

#: Connecting and waiting for an answer: as FastHttpUser's defaults (60 s each).
TIMEOUT_S = 60.0


class HttpFailure(Exception):
    """A request the target answered wrongly (status, body)."""


class HttpPredictUser(LoadUserMixin, User):
    abstract = True
    base_url: ClassVar[str]
    path: ClassVar[str] = "/predict"
    payloads: ClassVar[list[tuple[bytes, dict[str, str]]]] = []
    #: A response header that marks an answer as a cold start (Lambda), or None.
    cold_header: ClassVar[str | None] = None
    #: Connections this user may open, as it needs them (the pool fills lazily): a
    #: closed-loop user uses one; a stage's single open-loop user one per request in
    #: flight, up to max_inflight.
    connections: ClassVar[int] = 1

    def on_start(self) -> None:
        super().on_start()
        url = urlsplit(self.base_url)
        self.client = HTTPClient(url.hostname or "127.0.0.1", url.port or 80,
                                 concurrency=self.connections,
                                 connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def predict(self) -> None:
        self.step()

    def items(self) -> list[tuple[bytes, dict[str, str]]]:
        return self.payloads

    def send(self, item: tuple[bytes, dict[str, str]], intended: float | None = None,
             queued: bool = False) -> None:
        body, headers = item
        # Connection refused, reset, a timeout: raised, and reported as the failure.
        with self.timed("POST", "predict", intended, queued) as call:
            response = self.client.request("POST", self.path, body=body, headers=headers)
            try:
                content = response.read()
            finally:
                response.release()
            call.length = len(content)
            if response.status_code != 200:
                call.failure = HttpFailure(f"HTTP {response.status_code}: {content[:120]!r}")
            elif not content.startswith(RESPONSE_PREFIX):
                call.failure = HttpFailure("200 without a predictions body")
            if self.cold_header and response.get(self.cold_header) is not None:
                call.context["cold"] = True


def make_user(spec: dict[str, Any], payloads: list[tuple[bytes, dict[str, str]]],
              control: LoadControl) -> type[HttpPredictUser]:
    attrs = {
        "abstract": False, "base_url": spec["url"], "path": spec.get("path", "/predict"),
        "payloads": payloads, "control": control, "_ids": itertools.count(),
        "cold_header": spec.get("cold_header"),
        "connections": int(spec.get("max_inflight", 1)),
    }
    return type("HttpPredict", (HttpPredictUser,), attrs)
