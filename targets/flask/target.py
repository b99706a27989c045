"""The Flask target as the orchestrator sees it: a gunicorn process on loopback."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from targets import codec
from targets.base import HttpPayload, LoadSpec
from targets.errors import TargetError
from targets.flask.server import DEFAULT_THREADS
from targets.httpclient import HttpClient
from targets.served import ServedTarget

if TYPE_CHECKING:
    import numpy as np

    from targets.bundle import Prediction


class FlaskTarget(ServedTarget):
    name = "flask"
    server_module = "targets.flask.server"
    server_kind = "gunicorn gthread + Flask"
    default_threads = DEFAULT_THREADS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: HttpClient | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _connect(self) -> None:
        assert self.port is not None
        self._client = HttpClient(self.host, self.port)

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _serving_pid(self) -> int | None:
        if self._client is None:
            return None
        try:
            status, body = self._client.request("GET", "/healthz")
            pid = json.loads(body).get("pid") if status == 200 else None
        except (TargetError, ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) else None

    def request(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self._client is not None, "start() first"
        return self._client.request("POST", "/predict", body, headers)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        body, headers = codec.encode_request(batch, self.encoding)
        status, answer = self.request(body, headers)
        if status != 200:
            raise TargetError(
                f"flask answered {status} to a request in-process serving answers: "
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
