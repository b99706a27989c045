"""A Lambda function called through the Invoke API with boto3, as an application calls
it: real AWS, LocalStack, or this project's own emulator (``deploybench serve lambda``).

Addresses (``--endpoint NAME=ADDRESS``):

* ``lambda://REGION/FUNCTION[:QUALIFIER]``, e.g. ``lambda://eu-west-1/digits:prod``;
* a function ARN, ``arn:aws:lambda:REGION:ACCOUNT:function:FUNCTION[:QUALIFIER]``;
* either with ``?endpoint=http://HOST:PORT`` for an Invoke API that is not AWS's.

Every call asks for the log tail (``LogType=Tail``: one permission, lambda:InvokeFunction,
covers it) and reads Lambda's REPORT line from it: Duration, Billed Duration, Memory Size,
Max Memory Used and, on a cold start, Init Duration. Those are the platform's own figures,
so cost and cold starts come from what Lambda billed, not from a model of it.

The client never retries (botocore retries throttles and 5xx by default, which would hide
them) and signs with the default credential chain. An emulator on an ``endpoint`` does
not check signatures: without credentials, calls to one go unsigned.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

if TYPE_CHECKING:
    import numpy as np

SCHEME = "lambda"
ADDRESS_HELP = ("lambda://REGION/FUNCTION[:QUALIFIER] or a function ARN, optionally with "
                "?endpoint=http://HOST:PORT for an Invoke API other than AWS's")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_FUNCTION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_QUALIFIER = re.compile(r"^(\$LATEST|[A-Za-z0-9_-]{1,128})$")
_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                  r"function:(?P<function>[^:]+)(?::(?P<qualifier>[^:]+))?$")
_REPORT_FIELD = re.compile(r"^(?P<key>[A-Za-z ]+): (?P<value>\d+(?:\.\d+)?) (?:ms|MB)$")
#: REPORT fields as recorded (the emulator's record names, so both summarise alike).
REPORT_KEYS = {"Duration": "duration_ms", "Billed Duration": "billed_ms",
               "Memory Size": "memory_mb", "Max Memory Used": "max_memory_used_mb",
               "Init Duration": "init_ms"}


class InvokeError(Exception):
    """A call that got no function result: throttled, refused, unreachable, timed out.
    ``code`` is the Invoke API's error code (or the transport error's class name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class FunctionAddress:
    region: str
    function: str  # a name or a full ARN, as the Invoke API takes either
    qualifier: str | None = None
    endpoint_url: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"region": self.region, "function": self.function,
                "qualifier": self.qualifier, "endpoint_url": self.endpoint_url}


def parse_address(text: str) -> FunctionAddress:
    """``lambda://...`` or an ARN -> FunctionAddress; ValueError says what to write."""
    base, _, query = text.partition("?")
    options = parse_qs(query, keep_blank_values=True) if query else {}
    unknown = sorted(set(options) - {"endpoint"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} in {text!r}; the only one is "
                         "?endpoint=http://HOST:PORT")
    endpoint = options.get("endpoint", [None])[-1]
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint {endpoint!r} is not an http(s):// URL")
    arn = _ARN.match(base)
    if arn:
        function = base if arn["qualifier"] is None else base.rsplit(":", 1)[0]
        region, qualifier = arn["region"], arn["qualifier"]
        name = arn["function"]
    else:
        parts = urlsplit(base)
        if parts.scheme != SCHEME:
            raise ValueError(f"{text!r} is not a Lambda function address; write {ADDRESS_HELP}")
        region = parts.netloc
        name, _, qualifier_text = parts.path.strip("/").partition(":")
        function, qualifier = name, qualifier_text or None
        if not _REGION.match(region):
            raise ValueError(f"{region!r} in {text!r} is not an AWS region (e.g. eu-west-1); "
                             f"write {ADDRESS_HELP}")
    if not _FUNCTION.match(name):
        raise ValueError(f"{name!r} in {text!r} is not a Lambda function name (letters, "
                         "digits, '-' and '_', at most 64)")
    if qualifier is not None and not _QUALIFIER.match(qualifier):
        raise ValueError(f"{qualifier!r} in {text!r} is not a version or alias")
    return FunctionAddress(region, function, qualifier, endpoint)


_SESSIONS: dict[str, Any] = {}


def _session(region: str) -> Any:
    """One boto3 session per region and process: credentials are looked up once (from the
    environment, ~/.aws, SSO or the instance role), not once per load-generator user."""
    try:
        import boto3
    except ImportError as exc:
        raise InvokeError("MissingDependency", "calling Lambda needs boto3: pip install "
                          "'deploybench[aws]' (make setup installs it)") from exc
    if region not in _SESSIONS:
        _SESSIONS[region] = boto3.session.Session(region_name=region)
    return _SESSIONS[region]


def has_credentials(address: FunctionAddress) -> bool:
    """Whether calls will be signed; without credentials only an ``endpoint`` (an emulator,
    which checks no signature) can be called, unsigned."""
    from botocore.exceptions import BotoCoreError

    try:  # a profile that does not exist, a broken ~/.aws/config...
        found = _session(address.region).get_credentials() is not None
    except BotoCoreError as exc:
        raise InvokeError(type(exc).__name__, str(exc)) from exc
    if found:
        return True
    if address.endpoint_url is None:
        raise InvokeError("NoCredentials", "no AWS credentials found (environment, "
                          "~/.aws, SSO or an instance role): boto3 needs them to call "
                          f"{address.function} in {address.region}")
    return False


def make_client(address: FunctionAddress, timeout_s: float, connections: int = 1,
                signed: bool = True) -> Any:
    """A boto3 ``lambda`` client that never retries and waits ``timeout_s`` for answers."""
    from botocore import UNSIGNED
    from botocore.config import Config

    session = _session(address.region)
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=min(timeout_s, 10.0), read_timeout=timeout_s,
                    max_pool_connections=max(1, connections), tcp_keepalive=True)
    if not signed:
        config = config.merge(Config(signature_version=UNSIGNED))
    from botocore.exceptions import BotoCoreError

    try:
        return session.client("lambda", endpoint_url=address.endpoint_url, config=config)
    except BotoCoreError as exc:
        raise InvokeError(type(exc).__name__, str(exc)) from exc


def encode_event(batch: np.ndarray, encoding: str) -> bytes:
    """The direct-invocation event the handler takes (targets/awslambda/handler.py)."""
    if encoding == "binary":
        data = np.ascontiguousarray(batch, dtype="<f4").tobytes()
        doc: dict[str, Any] = {"data": base64.b64encode(data).decode(),
                               "shape": list(batch.shape), "dtype": "float32"}
    else:
        doc = {"inputs": batch.tolist()}
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_report(log_tail_b64: str | None) -> dict[str, float] | None:
    """The fields of the last REPORT line in a base64 log tail (None without one)."""
    if not log_tail_b64:
        return None
    try:
        text = base64.b64decode(log_tail_b64).decode("utf-8", "replace")
    except (ValueError, TypeError):
        return None
    lines = [line for line in text.splitlines() if line.startswith("REPORT ")]
    if not lines:
        return None
    fields: dict[str, float] = {}
    for part in lines[-1].split("\t"):
        match = _REPORT_FIELD.match(part.strip())
        if match and match["key"] in REPORT_KEYS:
            fields[REPORT_KEYS[match["key"]]] = float(match["value"])
    return fields


@dataclass
class Invocation:
    """One RequestResponse call's result."""

    payload: bytes
    function_error: str | None
    report: dict[str, float] | None
    request_id: str | None

    def record(self, sent_at: float) -> dict[str, Any]:
        """The invocation as the emulator records it (analysis/serverless.py reads both)."""
        report = self.report or {}
        init = report.get("init_ms")
        return {"ts": sent_at, "finished": time.time(), "source": "invoke",
                "request_id": self.request_id, "cold": init is not None, "init_ms": init,
                "duration_ms": report.get("duration_ms"),
                "billed_ms": int(report.get("billed_ms", 0)),
                "memory_mb": int(report["memory_mb"]) if "memory_mb" in report else None,
                "max_memory_used_mb": report.get("max_memory_used_mb"),
                "outcome": "ok" if self.function_error is None else "function_error",
                "reported": self.report is not None}

    def error_text(self) -> str:
        """``Unhandled: errorType: errorMessage`` from a function error's payload."""
        try:
            doc = json.loads(self.payload)
            detail = f"{doc.get('errorType', '?')}: {doc.get('errorMessage', '')}"
        except (ValueError, AttributeError):
            detail = self.payload[:200].decode("utf-8", "replace")
        return f"{self.function_error}: {detail}"[:300]


def invoke(client: Any, address: FunctionAddress, payload: bytes, dry_run: bool = False
           ) -> Invocation:
    """One synchronous invocation; raises :class:`InvokeError` when there is no result."""
    from botocore.exceptions import BotoCoreError, ClientError

    kwargs: dict[str, Any] = {"FunctionName": address.function, "Payload": payload,
                              "InvocationType": "DryRun" if dry_run else "RequestResponse"}
    if not dry_run:
        kwargs["LogType"] = "Tail"
    if address.qualifier:
        kwargs["Qualifier"] = address.qualifier
    try:
        answer = client.invoke(**kwargs)
        body = answer["Payload"].read()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise InvokeError(str(error.get("Code", "ClientError")),
                          str(error.get("Message", exc))) from exc
    except BotoCoreError as exc:  # unreachable, timed out, no credentials...
        raise InvokeError(type(exc).__name__, str(exc)) from exc
    meta = answer.get("ResponseMetadata", {})
    return Invocation(body, answer.get("FunctionError"), parse_report(answer.get("LogResult")),
                      meta.get("RequestId"))
