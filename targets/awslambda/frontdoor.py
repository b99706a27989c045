"""The emulator's public port: the Invoke API, a Function URL front door, and admin.

* ``POST /2015-03-31/functions/{name}/invocations``: the Lambda Invoke API as boto3's
  ``lambda`` client calls it (``endpoint_url``), unsigned requests accepted.
  RequestResponse (200; ``X-Amz-Function-Error: Unhandled`` on a function error),
  Event (202, queued), DryRun (204), ``LogType=Tail`` (``X-Amz-Log-Result``), 429
  ``TooManyRequestsException`` over the concurrency limit, 413 over 6 MB. The function
  may be named by its name, ``function`` (what the AWS emulator accepts), or its ARN.
* ``POST /_deploybench/update-code``: a new code version (the model redeployed):
  environments of the old one take no new invocation.
* ``/_deploybench/health``, ``/_deploybench/stats``, ``POST /_deploybench/reset`` (kill
  every environment: the next invocations are cold starts).
* With ``--metrics``, ``GET /metrics`` (and ``/_deploybench/metrics``): the function's
  CloudWatch metrics in Prometheus's text format (:mod:`.metrics`), answered by the
  emulator, not the function: no invocation.
* Any other request is a Function URL call: it becomes a payload format 2.0 event and the
  function's answer becomes the HTTP response (502 on a function error, 429 throttled).
  A cold invocation's answer carries ``X-Deploybench-Init-Ms`` (not an AWS header) so the
  load generator can tell cold from warm requests.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from targets.awslambda.environment import error_body
from targets.awslambda.function import Invocation, LambdaFunction, Throttled
from targets.awslambda.httpserver import Request, Response, json_response

if TYPE_CHECKING:
    from targets.awslambda.metrics import FunctionMetrics

INVOKE_PREFIX = "/2015-03-31/functions/"
ADMIN_PREFIX = "/_deploybench/"
#: Lambda's synchronous request payload limit.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
COLD_HEADER = "X-Deploybench-Init-Ms"
#: Where the emulator serves its metrics when they are on (not function calls then).
METRICS_PATHS = ("/metrics", ADMIN_PREFIX + "metrics")
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


def _aws_error(status: int, error_type: str, message: str, **extra: str) -> Response:
    body = json.dumps({"Type": "User", "message": message, **extra}).encode()
    return json_response(status, body, ("x-amzn-ErrorType", error_type))


class FrontDoor:
    def __init__(self, function: LambdaFunction, metrics: FunctionMetrics | None = None
                 ) -> None:
        self.function = function
        #: Served on GET /metrics when given (``--metrics``).
        self.metrics = metrics
        self.url_id = uuid.uuid4().hex[:32]

    async def route(self, request: Request) -> Response:
        if self.metrics is not None and request.path in METRICS_PATHS \
                and request.method in ("GET", "HEAD"):
            return self.metrics_response()
        if request.path.startswith(INVOKE_PREFIX):
            return await self._invoke_api(request)
        if request.path.startswith(ADMIN_PREFIX):
            return self._admin(request)
        return await self._function_url(request)

    # -- Invoke API -----------------------------------------------------------------
    def _names(self) -> set[str]:
        name = self.function.config.name
        return {name, "function", self.function.config.arn, f"{name}:$LATEST",
                f"{self.function.config.arn}:$LATEST"}

    async def _invoke_api(self, request: Request) -> Response:
        name, _, rest = request.path[len(INVOKE_PREFIX):].partition("/")
        if rest != "invocations":
            return _aws_error(404, "ResourceNotFoundException", f"no route {request.path}")
        if request.method != "POST":
            return _aws_error(405, "InvalidParameterValueException", "use POST")
        qualifier = dict(parse_qsl(request.query)).get("Qualifier", "$LATEST")
        if name not in self._names() or qualifier != "$LATEST":
            return _aws_error(404, "ResourceNotFoundException",
                              f"Function not found: {name} (qualifier {qualifier}); this "
                              f"emulator serves {self.function.config.name}:$LATEST")
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return _aws_error(413, "RequestTooLargeException",
                              f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for "
                              "the InvokeFunction operation")
        payload = request.body or b"{}"
        try:
            json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _aws_error(400, "InvalidRequestContentException",
                              "Could not parse request body into json")
        kind = request.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind == "DryRun":
            return Response(204)
        if kind == "Event":
            self.function.enqueue(payload)
            return Response(202, headers=[("x-amzn-RequestId", str(uuid.uuid4()))])
        if kind != "RequestResponse":
            return _aws_error(400, "InvalidParameterValueException",
                              f"invalid X-Amz-Invocation-Type {kind[:40]!r}")
        tail = request.headers.get("x-amz-log-type", "None") == "Tail"
        try:
            inv = await self.function.invoke(payload, "invoke", detailed_report=tail)
        except Throttled:
            return self._throttle_error()
        headers = [("Content-Type", inv.outcome.content_type),
                   ("X-Amz-Executed-Version", "$LATEST"), ("x-amzn-RequestId", inv.request_id)]
        if inv.outcome.failed:
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        if tail:
            headers.append(("X-Amz-Log-Result", base64.b64encode(inv.log_tail()).decode()))
        return Response(200, inv.outcome.body, headers)

    def metrics_response(self) -> Response:
        assert self.metrics is not None
        body, content_type = self.metrics.exposition()
        return Response(200, body, [("Content-Type", content_type)])

    def _throttle_error(self) -> Response:
        return _aws_error(
            429, "TooManyRequestsException", "Rate Exceeded.",
            Reason="ReservedFunctionConcurrentInvocationLimitExceeded")

    # -- admin ----------------------------------------------------------------------
    def _admin(self, request: Request) -> Response:
        what = request.path[len(ADMIN_PREFIX):]
        if what == "health" and request.method == "GET":
            return json_response(200, json.dumps({
                "status": "ok", "pid": os.getpid(), "function": self.function.config.name,
            }).encode())
        if what == "stats" and request.method == "GET":
            return json_response(200, json.dumps(self.function.stats()).encode())
        if what == "reset" and request.method == "POST":
            return json_response(200, json.dumps({"killed": self.function.reset()}).encode())
        if what == "update-code" and request.method == "POST":
            version = self.function.update_code()
            return json_response(200, json.dumps({"code_version": version}).encode())
        return json_response(404, error_body("NotFound", f"no admin route {what!r}"))

    # -- Function URL ---------------------------------------------------------------
    def _event(self, request: Request) -> dict[str, Any]:
        headers = dict(request.headers)
        cookies = headers.pop("cookie", None)
        content_type = headers.get("content-type", "")
        body = request.body
        is_text = content_type.startswith(TEXT_TYPES)
        text: str | None = None
        if body and is_text:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                is_text = False
        now = time.time()
        params: dict[str, str] = {}
        for key, value in parse_qsl(request.query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        domain = f"{self.url_id}.lambda-url.{self.function.config.region}.on.aws"
        user_agent = headers.get("user-agent", "")
        return {
            "version": "2.0", "routeKey": "$default", "rawPath": request.path,
            "rawQueryString": request.query,
            "cookies": cookies.split("; ") if cookies else None,
            "headers": headers,
            "queryStringParameters": params or None,
            "requestContext": {
                "accountId": "anonymous", "apiId": self.url_id, "domainName": domain,
                "domainPrefix": self.url_id,
                "http": {"method": request.method, "path": request.path,
                         "protocol": "HTTP/1.1", "sourceIp": request.peer,
                         "userAgent": user_agent},
                "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                "time": f"{dt.datetime.fromtimestamp(now, dt.UTC):%d/%b/%Y:%H:%M:%S +0000}",
                "timeEpoch": int(now * 1000),
            },
            "body": (text if is_text else base64.b64encode(body).decode()) if body else None,
            "isBase64Encoded": bool(body) and not is_text,
        }

    async def _function_url(self, request: Request) -> Response:
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return json_response(413, b'{"message":"Request Entity Too Large"}')
        event = json.dumps(self._event(request)).encode()
        try:
            inv = await self.function.invoke(event, "url")
        except Throttled:
            return json_response(429, b'{"message":"Rate Exceeded."}')
        response = self._http_response(inv)
        response.headers.append(("x-amzn-RequestId", inv.request_id))
        if inv.cold and inv.outcome.init_ms is not None:
            response.headers.append((COLD_HEADER, f"{inv.outcome.init_ms:.3f}"))
        return response

    @staticmethod
    def _http_response(inv: Invocation) -> Response:
        if inv.outcome.failed:
            return json_response(502, b'{"message":"Internal Server Error"}')
        try:
            answer = json.loads(inv.outcome.body)
        except (UnicodeDecodeError, ValueError):
            return json_response(502, b'{"message":"Internal Server Error"}')
        if not (isinstance(answer, dict) and "statusCode" in answer):
            # Any other JSON: 200 with the value as the body (Function URL inference).
            return json_response(200, inv.outcome.body)
        headers = [(str(k), str(v)) for k, v in (answer.get("headers") or {}).items()]
        headers += [("Set-Cookie", str(c)) for c in answer.get("cookies") or []]
        body = answer.get("body") or ""
        try:
            data = base64.b64decode(body) if answer.get("isBase64Encoded") else str(body).encode()
            status = int(answer["statusCode"])
        except (binascii.Error, ValueError, TypeError):
            return json_response(502, b'{"message":"Internal Server Error"}')
        return Response(status, data, headers)
