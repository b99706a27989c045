"""The FastAPI application: ``POST /predict``, ``GET /healthz`` and ``GET /openapi.json``,
the Flask target's HTTP contract exactly (:mod:`targets.flask.app`).

Every error is answered as JSON ``{"error": ..., "status": ...}``: malformed input gets
400, a body over the limit 413, a wrong content type 415 (all from
:mod:`targets.wire.codec`), an unknown path 404 and a wrong method 405 with ``Allow``;
nothing a client sends can produce a 500 or kill a worker.

The request body is read raw and decoded by the codec, and the answer is the codec's
bytes in a plain :class:`Response`: FastAPI's pydantic models would validate and
serialise everything a second time. Its generated OpenAPI document (and the docs pages
built on it) is off: it could not describe the binary body, so the hand-written
:mod:`targets.wire.openapi` is served, as Flask serves it.

The model call never runs on the event loop, which keeps answering health checks and
reading the next requests meanwhile. Where it runs is ``--pool`` (:data:`POOLS`); the
choice and its measurements are in :mod:`targets.fastapi.server` (its ``POOLS``). With
``--batching`` it runs in the worker's :class:`targets.batcher.Batcher` instead: the
request is decoded on the event loop (the codec's work, small beside a forward pass) and
awaits its own answers from the batcher's model thread (``apredict``), so one loop can hold
as many requests waiting to be batched as arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from targets.batcher import Batcher, worker_batcher
from targets.batching import BatchingSpec
from targets.bundles.resolve import get_bundle
from targets.errors import RequestError
from targets.monitor import Monitor, predictor, worker_monitor
from targets.monitorapp import MetricsASGI
from targets.monitoring import OFF, Monitoring
from targets.wire import codec, openapi
from targets.wire.asgi import read_body

log = logging.getLogger(__name__)


def _json(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=codec.JSON_TYPE, headers=headers)


async def body_of(request: Request) -> bytes:
    """The body as a dependency (the "sync" pool's endpoint cannot await it), at module
    level so that FastAPI resolves its annotation; the limit is the app's."""
    return await read_body(request, request.app.state.max_body)


def _offload(pool: str, threads: int) -> Callable[..., Any]:
    """``await offload(fn, *args)``: ``fn(*args)`` in ``pool``'s threads."""
    if pool == "executor":
        # Created in the worker (after the fork); its threads start at first use.
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")

        async def in_executor(fn: Callable[..., bytes], *args: Any) -> bytes:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

        return in_executor
    return run_in_threadpool


def _answer_errors(app: FastAPI) -> None:
    """Every error as JSON ``{"error", "status"}``."""

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError) -> Response:
        return _json(codec.encode_error(exc.status, exc.message), exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # No endpoint declares a parameter FastAPI validates; should one, its 422 is ours.
        return _json(codec.encode_error(400, f"invalid request: {exc.errors()!s:.200}"), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # Starlette's 404 and 405 (with Allow, as RFC 9110 asks), as JSON.
        return _json(codec.encode_error(exc.status_code, exc.detail), exc.status_code,
                     dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:  # a bug
        log.exception("unexpected error serving a request")
        return _json(codec.encode_error(500, f"internal error: {type(exc).__name__}"), 500)


def _batched(app: FastAPI, batcher: Batcher, input_shape: tuple[int, ...],
             limits: codec.Limits, monitor: Monitor | None) -> None:
    """``POST /predict`` through the worker's batcher (each request logged with its own
    predictions under --log-predictions)."""
    max_body = limits.max_body_bytes
    log = monitor.log if monitor is not None else None

    @app.post("/predict")
    async def predict_batched(request: Request) -> Response:
        body = await read_body(request, max_body)
        batch = codec.decode_request(request.headers.get("content-type"), body,
                                     request.headers, input_shape, limits)
        predictions = await batcher.apredict(batch)
        if log is not None:
            log.record(batch, predictions)
        return _json(codec.encode_predictions(predictions), 200)


def create_app(bundle_name: str, limits: codec.Limits = codec.DEFAULT_LIMITS, *,
               threads: int = 2, pool: str = "executor",
               batching: BatchingSpec | None = None,
               batch_log_dir: str | None = None, monitoring: Monitoring = OFF,
               prediction_log_dir: str | None = None) -> ASGIApp:
    """Load the bundle (once per worker process) and build the app around it, its model
    run in ``pool``: "executor", this worker's own ThreadPoolExecutor of ``threads``
    threads (``loop.run_in_executor``); "anyio", anyio's pool (``run_in_threadpool``, its
    limiter set to ``threads``); "sync", a plain ``def`` endpoint, which FastAPI runs in
    anyio's pool (the same limiter). With ``batching``, the worker's batcher serves every
    prediction instead (call this in the worker, after the fork: it starts a thread). With
    ``monitoring``, the worker's metrics (the app wrapped: :mod:`targets.monitorapp`) and
    prediction log, closed at the app's shutdown."""
    bundle = get_bundle(bundle_name)
    bundle.load()
    monitor = worker_monitor(monitoring, bundle, prediction_log_dir)
    batcher = worker_batcher(bundle, batching, batch_log_dir, monitor)
    # batch -> predictions, chosen once: without monitoring, the model's call and no more
    # (batched, the batcher serves and _batched logs).
    infer = predictor(bundle, None, monitor)
    input_shape = bundle.input_shape
    max_body = limits.max_body_bytes
    health = json.dumps({"status": "ok", "bundle": bundle.name, "pid": os.getpid()}).encode()
    description = json.dumps(openapi.document(bundle.name, input_shape, limits,
                                              "fastapi")).encode()

    def answer(content_type: str | None, body: bytes, headers: Any) -> bytes:
        """Decode, predict, encode: the CPU's work of a request, off the event loop."""
        batch = codec.decode_request(content_type, body, headers, input_shape, limits)
        return codec.encode_predictions(infer(batch))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # anyio's pool is sized per event loop: set once the loop runs.
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield
        if batcher is not None:  # answers what it holds and flushes its batch log
            batcher.close()
        if monitor is not None:  # flushes the prediction log
            monitor.close()

    app = FastAPI(title=f"deploybench fastapi target ({bundle.name})", openapi_url=None,
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.max_body = max_body

    if batcher is not None:
        _batched(app, batcher, input_shape, limits, monitor)
    elif pool == "sync":
        @app.post("/predict")
        def predict_sync(request: Request, body: Annotated[bytes, Depends(body_of)]
                         ) -> Response:
            return _json(answer(request.headers.get("content-type"), body, request.headers),
                         200)
    else:
        offload = _offload(pool, threads)

        @app.post("/predict")
        async def predict(request: Request) -> Response:
            body = await read_body(request, max_body)
            return _json(await offload(answer, request.headers.get("content-type"), body,
                                       request.headers), 200)

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> Response:
        return _json(health, 200)

    @app.api_route("/openapi.json", methods=["GET", "HEAD"])
    async def openapi_json() -> Response:
        return _json(description, 200)

    _answer_errors(app)
    if monitor is not None and monitor.metrics is not None:
        # GET /metrics, and every /predict answer counted (error handlers' included).
        return MetricsASGI(app, monitor)
    return app
