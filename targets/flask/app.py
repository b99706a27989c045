"""The Flask application: ``POST /predict``, ``GET /healthz`` and its OpenAPI
description, ``GET /openapi.json`` (:mod:`targets.wire.openapi`).

With ``batching`` the worker's requests go through its :class:`targets.batcher.Batcher`
(built here, in the worker, after gunicorn's fork; closed at the worker's exit): the
gthread worker's threads wait in it while one forward pass serves them together.

With ``--metrics`` (:mod:`targets.monitorapp`) ``GET /metrics`` answers the worker's
and its siblings' metrics and every ``/predict`` answer is counted; with
``--log-predictions`` the worker logs them (:class:`targets.monitor.Monitor`).

Every error is answered as JSON ``{"error": ..., "status": ...}``: malformed input gets
400, a body over the limit 413, a wrong content type 415 (all from
:mod:`targets.wire.codec`), and nothing a client sends can produce a 500 or kill a worker.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from targets.batcher import Batcher, worker_batcher
from targets.batching import BatchingSpec
from targets.bundles.resolve import get_bundle
from targets.errors import RequestError
from targets.monitor import Monitor, predictor, worker_monitor
from targets.monitorapp import MetricsWSGI
from targets.monitoring import OFF, Monitoring
from targets.wire import codec, openapi

log = logging.getLogger(__name__)


#: WSGI's names of the binary encoding's request headers (X-Shape, X-Dtype).
SHAPE_KEY, DTYPE_KEY = ("HTTP_" + name.upper().replace("-", "_")
                        for name in (codec.SHAPE_HEADER, codec.DTYPE_HEADER))


def _json(body: bytes, status: int) -> Response:
    return Response(body, status=status, mimetype=codec.JSON_TYPE)


def _worker_batcher(bundle: Any, batching: BatchingSpec | None, batch_log_dir: str | None,
                    monitor: Monitor | None) -> Batcher | None:
    """The worker's batcher (None: not batching); it and the monitor closed at the
    worker's exit (gunicorn's workers end with sys.exit): the logs flushed."""
    if monitor is not None:
        atexit.register(monitor.close)  # after the batcher's close (atexit runs LIFO)
    batcher = worker_batcher(bundle, batching, batch_log_dir, monitor)
    if batcher is not None:
        atexit.register(batcher.close)
    return batcher


def create_app(bundle_name: str, limits: codec.Limits = codec.DEFAULT_LIMITS,
               batching: BatchingSpec | None = None, batch_log_dir: str | None = None,
               monitoring: Monitoring = OFF, prediction_log_dir: str | None = None
               ) -> Flask:
    """Load the bundle (once per worker process) and build the app around it; with
    ``batching``, start the worker's batcher, with ``monitoring`` its metrics and
    prediction log (call this in the worker, after the fork)."""
    bundle = get_bundle(bundle_name)
    bundle.load()
    monitor = worker_monitor(monitoring, bundle, prediction_log_dir)
    # batch -> predictions, chosen once: without monitoring, the model's call and no more.
    infer = predictor(bundle, _worker_batcher(bundle, batching, batch_log_dir, monitor),
                      monitor)
    input_shape = bundle.input_shape
    app = Flask("deploybench.flask")
    max_body = limits.max_body_bytes
    health = json.dumps({"status": "ok", "bundle": bundle.name, "pid": os.getpid()}).encode()
    description = json.dumps(openapi.document(bundle.name, input_shape, limits)).encode()

    @app.post("/predict")
    def predict() -> Response:
        # The request's Werkzeug object once, not through Flask's proxy at every use.
        req = request._get_current_object()  # type: ignore[attr-defined]
        environ = req.environ
        # The body limit, enforced here rather than by Flask's MAX_CONTENT_LENGTH, which
        # reads every body through a Python-level stream wrapper: a declared length over
        # the limit is refused unread, and no more than the limit and a byte is ever read
        # (a chunked body declares none).
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > max_body:
            raise RequestError(413, f"body of {declared} bytes exceeds {max_body}")
        body = req.stream.read(max_body + 1)
        # The binary encoding's headers, read through Werkzeug only when one was sent
        # (a JSON request has neither: two dict lookups instead of two header lookups).
        headers: Any = req.headers if SHAPE_KEY in environ or DTYPE_KEY in environ else {}
        batch = codec.decode_request(environ.get("CONTENT_TYPE"), body, headers, input_shape,
                                     limits)
        return _json(codec.encode_predictions(infer(batch)), 200)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(health, 200)

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        return _json(description, 200)

    @app.errorhandler(RequestError)
    def bad_request(exc: RequestError) -> Response:
        return _json(codec.encode_error(exc.status, exc.message), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = _json(codec.encode_error(status, exc.description or exc.name), status)
        for name, value in exc.get_headers():  # Allow on a 405, as RFC 9110 asks
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> Response:  # a bug, never the client's input
        log.exception("unexpected error serving a request")
        return _json(codec.encode_error(500, f"internal error: {type(exc).__name__}"), 500)

    if monitor is not None and monitor.metrics is not None:
        # GET /metrics, and every /predict answer counted (error handlers' included).
        app.wsgi_app = MetricsWSGI(app.wsgi_app, monitor)  # type: ignore[method-assign]
    return app
