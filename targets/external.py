"""A deployment that already runs elsewhere (``--endpoint NAME=URL``): on Kubernetes, in a
container started by hand, behind a load balancer. deploybench starts and stops nothing;
it checks health and parity and drives it with the same Locust users.

* ``http://HOST:PORT[/PREFIX]`` speaks the Flask API (``POST PREFIX/predict``, ``GET
  PREFIX/healthz``): the flask target, or the Lambda emulator's Function URL front door,
  or anything serving that API.
* ``grpc://HOST:PORT`` speaks the gRPC API (targets/grpc/predict.proto), health service
  included.

What runs on another machine cannot be measured from here: its CPU and memory figures
are absent (not zero), and the report says so. Its cold start cannot be timed either.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from targets import codec
from targets.base import HttpPayload, LoadSpec, TargetBase
from targets.errors import TargetError

if TYPE_CHECKING:
    import numpy as np

    from targets.bundle import Prediction

#: How long an endpoint may take to answer its first health check.
HEALTH_TIMEOUT_S = 30.0
SCHEMES = ("http", "grpc")


def parse_endpoint(text: str) -> tuple[str, str]:
    """``NAME=URL`` -> (name, url), checked; raises ValueError with what to write."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise ValueError(f"bad endpoint {text!r}: write NAME=URL, e.g. "
                         "k8s-flask=http://10.0.0.5:8000 or k8s-grpc=grpc://10.0.0.6:50051")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"bad endpoint name {name!r}: letters, digits, '-' and '_' only")
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"endpoint {name}: scheme {parts.scheme or '(none)'!r} is not "
                         f"supported; use {' or '.join(s + '://' for s in SCHEMES)}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"endpoint {name}: {url!r} needs a host and a port")
    if parts.scheme == "grpc" and parts.path not in ("", "/"):
        raise ValueError(f"endpoint {name}: a gRPC address has no path ({url!r})")
    return name, url


class ExternalTarget(TargetBase):
    """Common to both protocols: nothing to start, so 'start' is waiting for health."""

    def __init__(self, name: str, url: str, encoding: str) -> None:
        self.name = name
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.host = parts.hostname or ""
        self.port = parts.port or 0
        self.prefix = parts.path.rstrip("/")
        self.encoding = encoding
        self.startup_s: float | None = None

    def _connect(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        client = getattr(self, "_client", None)  # both protocols' clients close()
        if client is not None:
            client.close()
            self._client = None

    def health(self) -> bool:
        raise NotImplementedError

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        raise NotImplementedError

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        raise NotImplementedError

    def start(self) -> None:
        self._connect()
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not self.health():
            if time.monotonic() > deadline:
                raise TargetError(f"endpoint {self.name} ({self.url}) did not answer its health "
                                  f"check within {HEALTH_TIMEOUT_S:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        self._disconnect()

    def describe(self) -> dict[str, Any]:
        return {"runtime": "external endpoint (not started or measured by deploybench)",
                "server": "unknown: runs elsewhere", "address": self.url, "cpus": [],
                "workers": None, "threads_per_worker": None, "encoding": self.encoding,
                "external": True}


class ExternalHttpTarget(ExternalTarget):
    def _connect(self) -> None:
        from targets.httpclient import HttpClient

        self._client: Any = HttpClient(self.host, self.port, timeout_s=30.0)

    def health(self) -> bool:
        try:
            status, _ = self._client.request("GET", f"{self.prefix}/healthz")
        except TargetError:
            return False
        return bool(status == 200)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        body, headers = codec.encode_request(batch, self.encoding)
        status, answer = self._client.request("POST", f"{self.prefix}/predict", body, headers)
        if status != 200:
            raise TargetError(f"endpoint {self.name} answered {status}: {answer[:200]!r}")
        try:
            return codec.decode_predictions(answer)
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(f"endpoint {self.name} answered 200 without predictions "
                              f"({exc}): {answer[:200]!r}") from exc

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        payloads: list[HttpPayload] = []
        for example in examples:
            body, headers = codec.encode_request(example, self.encoding)
            payloads.append({"body": body, "headers": headers})
        return {"protocol": "http", "url": f"http://{self.host}:{self.port}",
                "path": f"{self.prefix}/predict", "payloads": payloads, "cpus": [],
                "watch_pids": []}


class ExternalGrpcTarget(ExternalTarget):
    def __init__(self, name: str, url: str, encoding: str) -> None:
        super().__init__(name, url, "protobuf: raw float32 bytes + shape")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> None:
        from targets.grpc.client import GrpcClient

        self._client: Any = GrpcClient(self.address)

    def health(self) -> bool:
        return bool(self._client.health() == "SERVING")

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        result: list[Prediction] = self._client.predict(batch)
        return result

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        from targets.grpc.client import PREDICT_METHOD, encode_request

        return {"protocol": "grpc", "address": self.address, "method": PREDICT_METHOD,
                "messages_b64": [base64.b64encode(encode_request(e)).decode()
                                 for e in examples],
                "cpus": [], "watch_pids": []}


def make_external(name: str, url: str, encoding: str) -> ExternalTarget:
    if url.startswith("grpc://"):
        return ExternalGrpcTarget(name, url, encoding)
    return ExternalHttpTarget(name, url, encoding)
