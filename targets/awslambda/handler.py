"""The Lambda function: ``targets.awslambda.handler.handler``, run by ``awslambdaric``.

Module import is Lambda's Init phase: the bundle named by ``DEPLOYBENCH_BUNDLE`` is loaded
here, once per execution environment. Two kinds of events are served:

* **Function URL / HTTP API (payload format 2.0)**: ``POST /predict`` with the same bodies
  as the Flask target (JSON, or ``application/octet-stream`` with ``X-Shape``; binary bodies
  arrive base64-encoded in the event). Answers ``{"statusCode", "headers", "body"}``; a bad
  request gets 400/413/415 with a JSON error body, exactly as Flask answers it.
* **Direct invocation** (the Invoke API): ``{"inputs": [[...]]}``, or
  ``{"data": "<base64 float32>", "shape": [1, 64], "dtype": "float32"}``. Answers
  ``{"predictions": [...]}``; a bad request raises :class:`InvalidRequest`, which Lambda
  reports as a function error (``X-Amz-Function-Error: Unhandled``, errorType InvalidRequest).

With ``DEPLOYBENCH_LOG_PREDICTIONS`` set (the emulator's ``--log-predictions``), each
successful prediction, of either kind of event, is committed to the environment's
prediction log before the answer is returned (:mod:`.predictions`: there is no time
after it).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from targets.awslambda.events import decode_direct_event, decode_url_event
from targets.awslambda.predictions import open_log
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.errors import RequestError
from targets.runtimes.process import die_with_parent
from targets.wire import codec

die_with_parent()  # the emulator that started this environment is our parent

BUNDLE = get_bundle(os.environ.get("DEPLOYBENCH_BUNDLE", "digits"))
BUNDLE.load()
LIMITS = codec.Limits(
    max_body_bytes=int(os.environ.get("DEPLOYBENCH_MAX_BODY_BYTES",
                                      codec.DEFAULT_LIMITS.max_body_bytes)),
    max_batch=int(os.environ.get("DEPLOYBENCH_MAX_BATCH", codec.DEFAULT_LIMITS.max_batch)),
)
#: The environment's prediction log (None: not logging).
PREDICTIONS = open_log(BUNDLE)
#: Response header carrying the handler's own time, so the platform's overhead can be
#: told apart from the model's (not an AWS header; harmless to clients).
HANDLER_TIME_HEADER = "x-deploybench-handler-ms"


class InvalidRequest(Exception):
    """A direct invocation whose payload cannot be served; names the problem."""


def _http_response(status: int, body: bytes, started: float) -> dict[str, Any]:
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    return {"statusCode": status,
            "headers": {"content-type": codec.JSON_TYPE, HANDLER_TIME_HEADER: f"{elapsed_ms:.3f}"},
            "body": body.decode()}


def _http_event(event: dict[str, Any], started: float) -> dict[str, Any]:
    http = event["requestContext"]["http"]
    method, path = http.get("method"), event.get("rawPath", http.get("path"))
    if path == "/healthz" and method == "GET":
        return _http_response(200, json.dumps({"status": "ok", "bundle": BUNDLE.name,
                                               "pid": os.getpid()}).encode(), started)
    if path != "/predict":
        return _http_response(404, codec.encode_error(404, f"no route {path!r}"), started)
    if method != "POST":
        return _http_response(405, codec.encode_error(405, "use POST"), started)
    try:
        batch = decode_url_event(event, BUNDLE.input_shape, LIMITS)
        predictions = serve_batch(BUNDLE, batch)
    except RequestError as exc:
        return _http_response(exc.status, codec.encode_error(exc.status, exc.message), started)
    if PREDICTIONS is not None:
        PREDICTIONS.record(batch, predictions)
    return _http_response(200, codec.encode_predictions(predictions), started)


def _direct(event: Any) -> dict[str, Any]:
    try:
        batch = decode_direct_event(event, BUNDLE.input_shape, LIMITS)
        predictions = serve_batch(BUNDLE, batch)
    except RequestError as exc:
        raise InvalidRequest(exc.message) from None
    if PREDICTIONS is not None:
        PREDICTIONS.record(batch, predictions)
    return {"predictions": [{"label": p.label, "probabilities": list(p.probabilities)}
                            for p in predictions]}


def handler(event: Any, context: Any) -> Any:
    started = time.perf_counter()
    if isinstance(event, dict) and isinstance(event.get("requestContext"), dict) \
            and "http" in event["requestContext"]:
        return _http_event(event, started)
    return _direct(event)
