"""The Ray Serve deployment: ``POST /predict`` and ``GET /healthz``, the Flask target's
HTTP contract, answered by each replica behind Serve's HTTP proxy.

Every error is answered as JSON ``{"error": ..., "status": ...}``: malformed input gets
400, a body over the limit 413, a wrong content type 415 (all from
:mod:`targets.wire.codec`); a wrong path 404, a wrong method 405. Nothing a client sends
raises out of a replica, so the proxy never turns a client's input into a 500.

With batching (:class:`targets.batching.BatchingSpec`), requests go through
``@serve.batch``: a forward pass serves the requests queued within ``max_wait_ms`` of
the first, up to ``max_batch`` examples (Serve's ``batch_size_fn`` counts examples, not
requests); a request larger than ``max_batch`` is served alone, past the batcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import Response

from targets.batching import BatchingSpec, BatchLog
from targets.bundles.protocol import Prediction, serve_batch
from targets.bundles.resolve import get_bundle
from targets.entrypoint import set_torch_threads
from targets.errors import RequestError
from targets.wire import codec
from targets.wire.asgi import read_body

log = logging.getLogger(__name__)

#: Requests a replica takes at once unless told: Serve's own default ``max_ongoing_requests``.
DEFAULT_ONGOING = 5


@dataclass(frozen=True)
class ReplicaConfig:
    """What every replica is built with (pickled to the replica processes)."""

    bundle: str
    limits: codec.Limits
    #: torch threads per replica: replicas x torch threads = CPUs.
    torch_threads: int
    batching: BatchingSpec | None = None
    #: Each batching replica's batch log goes here (``batches-PID.log``); None: no log.
    batch_log_dir: str | None = None


def _json(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=codec.JSON_TYPE, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(codec.encode_error(status, message), status, headers)


def _examples(batches: list[np.ndarray]) -> int:
    """The size of a batch of requests for ``@serve.batch``: its examples."""
    return sum(len(b) for b in batches)


def application(config: ReplicaConfig, options: dict[str, Any]) -> Application:
    """The Serve application: :class:`Predictor` with Serve's deployment ``options``
    (replicas, their CPUs, requests at once), each replica built with ``config``."""
    return serve.deployment(name="deploybench", **options)(Predictor).bind(config)


class Predictor:
    """One replica: the bundle loaded once, one torch thread (or the CPUs' share)."""

    def __init__(self, config: ReplicaConfig) -> None:
        set_torch_threads(config.torch_threads)
        self.bundle = get_bundle(config.bundle)
        self.bundle.load()
        self.input_shape = self.bundle.input_shape
        self.limits = config.limits
        self.batching = config.batching
        # Flushed at every pass: Ray may stop a replica without letting it flush (a pass
        # costs milliseconds here; a write, microseconds).
        self.batch_log = (BatchLog(config.batch_log_dir, flush_s=0.0)
                          if config.batching is not None and config.batch_log_dir else None)
        if config.batching is not None:
            # The batcher's setters, which Serve's type hints do not declare.
            batcher: Any = self.predict_batched
            batcher.set_max_batch_size(config.batching.max_batch)
            batcher.set_batch_wait_timeout_s(config.batching.max_wait_ms / 1000)
        self.health = json.dumps({"status": "ok", "bundle": self.bundle.name,
                                  "pid": os.getpid()}).encode()

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except RequestError as exc:
            return _error(exc.status, exc.message)
        except Exception as exc:  # a bug, never the client's input
            log.exception("unexpected error serving a request")
            return _error(500, f"internal error: {type(exc).__name__}")

    async def _route(self, request: Request) -> Response:
        path, method = request.url.path.rstrip("/") or "/", request.method
        if path == "/predict":
            if method != "POST":
                return _error(405, f"{method} is not allowed on /predict; use POST",
                              {"Allow": "POST"})
            return await self._predict(request)
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return _error(405, f"{method} is not allowed on /healthz; use GET",
                              {"Allow": "GET, HEAD"})
            return _json(self.health, 200)
        return _error(404, f"no such path {path!r}: POST /predict or GET /healthz")

    async def _predict(self, request: Request) -> Response:
        body = await read_body(request, self.limits.max_body_bytes)
        batch = codec.decode_request(request.headers.get("content-type"), body,
                                     request.headers, self.input_shape, self.limits)
        if self.batching is not None and len(batch) <= self.batching.max_batch:
            answer = await self.predict_batched(batch)
            if isinstance(answer, RequestError):
                raise answer
            predictions = answer
        else:  # in a thread: the replica's event loop keeps answering meanwhile
            if self.batch_log is not None:  # over max_batch, served alone: a pass of 1
                self.batch_log.record(1, len(batch))
            predictions = await asyncio.to_thread(serve_batch, self.bundle, batch)
        return _json(codec.encode_predictions(predictions), 200)

    @serve.batch(batch_size_fn=_examples)
    async def predict_batched(self, batches: list[np.ndarray]
                              ) -> list[list[Prediction] | RequestError]:
        """One forward pass over the queued requests' examples; each request gets its own
        predictions back, or its own error (a non-finite output is one request's 400:
        ``@serve.batch`` would raise an exception in every request of the batch, so it is
        returned as a value and raised by its request alone)."""
        if self.batch_log is not None:
            self.batch_log.record(len(batches), _examples(batches))
        try:
            merged = await asyncio.to_thread(serve_batch, self.bundle, np.concatenate(batches))
        except RequestError:
            return [self._alone(b) for b in batches]
        answers: list[list[Prediction] | RequestError] = []
        start = 0
        for b in batches:
            answers.append(merged[start:start + len(b)])
            start += len(b)
        return answers

    def _alone(self, batch: np.ndarray) -> list[Prediction] | RequestError:
        """One request's predictions after the merged batch failed, or its own error."""
        try:
            return serve_batch(self.bundle, batch)
        except RequestError as exc:
            return exc
