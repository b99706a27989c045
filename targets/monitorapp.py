"""The HTTP servers' metrics: ``GET /metrics`` and every ``/predict`` answer counted.

A thin layer around the whole application (WSGI for Flask, ASGI for FastAPI), installed
only when ``--metrics`` is on: it answers ``GET /metrics`` itself (on the server's own
port), and for each request to ``/predict`` counts its answer by outcome (from the status:
the apps' error handlers, routing's 404/405 and a crash's 500 included) and observes the
time from the application receiving the request to its answer starting. Health checks,
the OpenAPI document and ``/metrics`` are not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from targets.monitor import SERVER_ERROR, Monitor, outcome_of_status

PREDICT_PATH = "/predict"
METRICS_PATH = "/metrics"


def _status_code(status: str) -> int:
    try:
        return int(status.split(" ", 1)[0])
    except ValueError:
        return 500


class MetricsWSGI:
    """``wsgi_app`` with ``GET /metrics`` and the /predict answers counted."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], monitor: Monitor) -> None:
        self.app = wsgi_app
        self.monitor = monitor

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == METRICS_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            body, content_type = self.monitor.exposition()
            start_response("200 OK", [("Content-Type", content_type),
                                      ("Content-Length", str(len(body)))])
            return [body if environ.get("REQUEST_METHOD") == "GET" else b""]
        if path != PREDICT_PATH:
            return self.app(environ, start_response)
        started = time.perf_counter()
        statuses: list[str] = []

        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info) if exc_info is not None \
                else start_response(status, headers)

        try:
            out = self.app(environ, start)
        except BaseException:
            self.monitor.answered(SERVER_ERROR, time.perf_counter() - started)
            raise
        outcome = outcome_of_status(_status_code(statuses[-1])) if statuses else SERVER_ERROR
        self.monitor.answered(outcome, time.perf_counter() - started)
        return out


class MetricsASGI:
    """An ASGI ``app`` with ``GET /metrics`` and the /predict answers counted."""

    def __init__(self, app: Any, monitor: Monitor) -> None:
        self.app = app
        self.monitor = monitor

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == METRICS_PATH and scope.get("method") in ("GET", "HEAD"):
            body, content_type = self.monitor.exposition()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", content_type.encode()),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body",
                        "body": body if scope.get("method") == "GET" else b""})
            return
        if path != PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        monitor = self.monitor
        started = time.perf_counter()
        counted = False

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                monitor.answered(outcome_of_status(message["status"]),
                                 time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if not counted:  # it raised (or returned) without answering
                monitor.answered(SERVER_ERROR, time.perf_counter() - started)
