"""The HTTP prediction API as the orchestrator speaks it: ``POST PREFIX/predict`` with the
codec's bodies and a health check by ``GET``.

Flask and FastAPI serve it (``GET /healthz``), and so do the Lambda emulator's Function URL and the
null HTTP server (with their own health paths) and any ``http://`` endpoint: one client
for all of them, whether deploybench started the server or it runs elsewhere.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from targets.base import ClientBase, Health, HttpPayload, LoadSpec
from targets.errors import TargetError
from targets.wire import codec
from targets.wire.httpclient import HttpClient

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction


class HttpApiClient(ClientBase, HttpClient):
    """``HttpApiClient(host, port, "json", prefix="/v1", who="endpoint k8s")``."""

    def __init__(self, host: str, port: int, encoding: str, *, prefix: str = "",
                 health_path: str = "/healthz", timeout_s: float = 30.0,
                 who: str = "the server", hint: str = "") -> None:
        super().__init__(host, port, timeout_s=timeout_s)
        self.encoding = encoding
        self.prefix = prefix.rstrip("/")
        self.health_path = health_path
        #: Who answered, and where to look, in an error's words.
        self.who, self.hint = who, hint

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def probe(self) -> Health:
        """200 from the health path; the PID when the answer is ``{"pid": ...}``."""
        try:
            status, body = self.request("GET", f"{self.prefix}{self.health_path}")
        except TargetError:
            return Health(False)
        if status != 200:
            return Health(False)
        try:
            pid = json.loads(body).get("pid")
        except (ValueError, AttributeError):
            pid = None
        return Health(True, pid if isinstance(pid, int) else None)

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """``POST PREFIX/predict``: (status, body, response headers with lower-case names)."""
        return self.request_full("POST", f"{self.prefix}/predict", body, headers)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        status, answer, _ = self.post(*codec.encode_request(batch, self.encoding))
        if status != 200:
            raise TargetError(f"{self.who} answered {status} to a request in-process serving "
                              f"answers: {answer[:200]!r}{self.hint}")
        try:
            return codec.decode_predictions(answer)
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(f"{self.who} answered 200 without predictions ({exc}): "
                              f"{answer[:200]!r}{self.hint}") from exc

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        payloads: list[HttpPayload] = []
        for example in examples:
            body, headers = codec.encode_request(example, self.encoding)
            payloads.append({"body": body, "headers": headers})
        return {"protocol": "http", "url": self.url, "path": f"{self.prefix}/predict",
                "payloads": payloads}
