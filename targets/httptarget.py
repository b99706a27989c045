"""What the HTTP-served targets (Flask, the Lambda Function URL) share as the orchestrator
sees them: ``POST /predict`` with the codec's bodies, a keep-alive client for health and
parity, and the same load for Locust's HTTP user."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from targets.base import HttpPayload, LoadSpec
from targets.errors import TargetError
from targets.served import ServedTarget
from targets.wire import codec
from targets.wire.httpclient import HttpClient

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction


class HttpServedTarget(ServedTarget):
    #: How long the orchestrator's own requests may take (a Lambda cold start included).
    client_timeout_s = 30.0
    #: ``GET`` here answers ``{"pid": ...}`` with 200 once the server is ready.
    health_path = "/healthz"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: HttpClient | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _connect(self) -> None:
        assert self.port is not None
        self._client = HttpClient(self.host, self.port, timeout_s=self.client_timeout_s)

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _serving_pid(self) -> int | None:
        if self._client is None:
            return None
        try:
            status, body = self._client.request("GET", self.health_path)
            pid = json.loads(body).get("pid") if status == 200 else None
        except (TargetError, ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) else None

    def request_with_headers(self, body: bytes, headers: dict[str, str]
                             ) -> tuple[int, bytes, dict[str, str]]:
        """POST /predict: (status, body, response headers with lower-case names)."""
        assert self._client is not None, "start() first"
        return self._client.request_full("POST", "/predict", body, headers)

    def request(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        status, answer, _ = self.request_with_headers(body, headers)
        return status, answer

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        body, headers = codec.encode_request(batch, self.encoding)
        status, answer = self.request(body, headers)
        if status != 200:
            raise TargetError(
                f"{self.name} answered {status} to a request in-process serving answers: "
                f"{answer[:200]!r}. See its log ({self.log_path})"
            )
        return codec.decode_predictions(answer)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url}

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        assert self._server is not None, "start() first"
        payloads: list[HttpPayload] = []
        for example in examples:
            body, headers = codec.encode_request(example, self.encoding)
            payloads.append({"body": body, "headers": headers})
        return {
            "protocol": "http", "url": self.url, "path": "/predict", "payloads": payloads,
            "cpus": self.cpus, "watch_pids": [self._server.pid],
        }
