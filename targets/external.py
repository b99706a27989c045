"""A deployment that already runs elsewhere (``--endpoint NAME=URL``): on Kubernetes, in a
container started by hand, behind a load balancer. deploybench starts and stops nothing;
it checks health and parity and drives it with the same Locust users.

* ``http://HOST:PORT[/PREFIX]`` speaks the Flask API (``POST PREFIX/predict``, ``GET
  PREFIX/healthz``): the flask target, or the Lambda emulator's Function URL front door,
  or anything serving that API.
* ``grpc://HOST:PORT`` speaks the gRPC API (targets/grpc/predict.proto), health service
  included.
* ``lambda://REGION/FUNCTION[:QUALIFIER]`` or a function ARN is a Lambda function running
  this project's handler (targets/awslambda/handler.py), called through the Invoke API
  with boto3 (targets/awslambda/invoke.py): real AWS, or with ``?endpoint=URL`` LocalStack
  or the emulator. Lambda's REPORT lines give its durations, memory and cost.

What runs on another machine cannot be measured from here: its CPU and memory figures
are absent (not zero), and the report says so. Its cold start cannot be timed either
(a Lambda function's cold starts during the load are counted from its REPORT lines).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from targets.base import HttpPayload, LoadSpec, TargetBase
from targets.errors import TargetError
from targets.wire import codec

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction

#: How long an endpoint may take to answer its first health check.
HEALTH_TIMEOUT_S = 30.0
SCHEMES = ("http", "grpc", "lambda")


def parse_endpoint(text: str) -> tuple[str, str]:
    """``NAME=URL`` -> (name, url), checked; raises ValueError with what to write."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise ValueError(f"bad endpoint {text!r}: write NAME=URL, e.g. "
                         "k8s-flask=http://10.0.0.5:8000 or k8s-grpc=grpc://10.0.0.6:50051")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"bad endpoint name {name!r}: letters, digits, '-' and '_' only")
    if url.startswith(("lambda://", "arn:")):
        from targets.awslambda.invoke import parse_address

        try:
            parse_address(url)
        except ValueError as exc:
            raise ValueError(f"endpoint {name}: {exc}") from None
        return name, url
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
        from targets.wire.httpclient import HttpClient

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


class ExternalLambdaTarget(ExternalTarget):
    """A Lambda function called through the Invoke API (targets/awslambda/invoke.py).

    Health is a DryRun invocation (the function exists and may be invoked); parity
    invokes it for real. The load generator's users append each call's REPORT fields to
    ``records_dir``, summarised per stage like the emulator's records: invocations, cold
    starts, billed duration, memory and cost as Lambda billed them."""

    def __init__(self, name: str, url: str, encoding: str, records_dir: Path | None = None
                 ) -> None:
        from targets.awslambda.invoke import parse_address

        super().__init__(name, url, encoding)
        self.url = url
        self.function = parse_address(url)
        self.records_dir = records_dir
        self._client: Any = None
        self._memory_mb: int | None = None
        self.signed = True

    def _connect(self) -> None:
        from targets.awslambda.invoke import InvokeError, has_credentials, make_client

        try:
            self.signed = has_credentials(self.function)
            self._client = make_client(self.function, HEALTH_TIMEOUT_S, signed=self.signed)
        except InvokeError as exc:
            raise TargetError(f"endpoint {self.name}: {exc}") from None
        if self.records_dir is not None:
            self.records_dir.mkdir(parents=True, exist_ok=True)

    def _call(self, payload: bytes, dry_run: bool = False) -> Any:
        from targets.awslambda.invoke import InvokeError, invoke

        try:
            return invoke(self._client, self.function, payload, dry_run=dry_run)
        except InvokeError as exc:
            raise TargetError(f"endpoint {self.name} ({self.function.function}): {exc}"
                              ) from None

    def health(self) -> bool:
        # Not a retryable wait: a function that is missing or may not be invoked says so.
        self._call(b"{}", dry_run=True)
        return True

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        from targets.awslambda.invoke import encode_event

        result = self._call(encode_event(batch, self.encoding))
        if result.function_error is not None:
            raise TargetError(f"endpoint {self.name}: function error {result.error_text()}")
        if result.report and result.report.get("memory_mb"):
            self._memory_mb = int(result.report["memory_mb"])
        try:
            return codec.decode_predictions(result.payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(f"endpoint {self.name} returned no predictions ({exc}): "
                              f"{result.payload[:200]!r}") from exc

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        from targets.awslambda.invoke import encode_event

        return {"protocol": "lambda-invoke", "function": self.function.describe(),
                "events": [encode_event(e, self.encoding).decode() for e in examples],
                "records_dir": str(self.records_dir) if self.records_dir else None,
                "signed": self.signed, "cpus": [], "watch_pids": []}

    def platform_records(self) -> list[dict[str, Any]] | None:
        """What the load generator recorded, or None when the function's log tails held
        no REPORT line (e.g. an emulator that returns none): no billed duration, so no
        cost, rather than a cost of zero."""
        if self.records_dir is None:
            return None
        records = [json.loads(line) for path in sorted(self.records_dir.glob("*.jsonl"))
                   for line in path.read_text().splitlines() if line.strip()]
        if any(r["outcome"] != "throttled" and not r.get("reported") for r in records):
            return None
        return sorted(records, key=lambda r: r["ts"])

    def final_facts(self) -> dict[str, Any]:
        return {"memory_mb": self._memory_mb}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(),
                "runtime": "AWS Lambda Invoke API via boto3 (not started or measured by "
                           "deploybench; REPORT lines give its durations and memory)",
                "server": "a Lambda function", "billing": "per_request",
                "function": self.function.describe(), "signed": self.signed,
                "encoding": f"{self.encoding} (direct-invocation event)"}


def make_external(name: str, url: str, encoding: str, work_dir: Path | None = None
                  ) -> ExternalTarget:
    if url.startswith(("lambda://", "arn:")):
        return ExternalLambdaTarget(
            name, url, encoding,
            records_dir=work_dir / f"{name}-invocations" if work_dir is not None else None)
    if url.startswith("grpc://"):
        return ExternalGrpcTarget(name, url, encoding)
    return ExternalHttpTarget(name, url, encoding)
