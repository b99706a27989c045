"""HTTP prediction user: a Locust ``User`` that sends each request as wrk does.

What a request costs the server and the load generator depends on how it is sent, so
this user sends what a well-behaved client sends and nothing more: each example's whole
request (request line, ``Host``, ``Content-Type``, ``Content-Length``, the binary
encoding's headers, the body) built once, before the load, and written with one
``sendall`` on a keep-alive connection; no ``User-Agent`` or other header the server would
parse for nothing. The answer is parsed by geventhttpclient's C parser
only where it must be: an answer with a ``Content-Length`` (every server here sends one)
is read directly (find the blank line, the status, the length; read the rest), anything
else (chunked, a 1xx, no length) goes to geventhttpclient's C parser with what was read.
On the digits request that is 387 bytes, the same as wrk's (``benchmarks/fidelity.py
--parts bytes``).

Connections are the user's own: an idle one is reused, a new one opened when none is
idle (one for a closed-loop user; up to ``max_inflight`` for a stage's single open-loop
user), never checked with an extra syscall before use (geventhttpclient's pool polls
each socket first) and without a socket timeout (gevent would arm a timer for every
read; the stage's drain timeout bounds a request that never answers). A connection the
server closes is dropped; nothing is retried (a retry would hide a failure). A
closed-loop task sends several requests in turn, so Locust's per-task bookkeeping is
paid once for them (a leaving user still stops within a few requests).

A request fails on a transport error or timeout, a status other than 200, or a 200
without a predictions body. The whole load-generator process's CPU per request is
recorded by every stage as ``loadgen_cpu_ms_per_request``.
"""

from __future__ import annotations

import itertools
import socket
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent.lock
import gevent.socket
from locust import User, task

from scenarios.control import LoadControl
from scenarios.httpwire import build_request, read_answer
from scenarios.users.closedloop import LoadUserMixin
from targets.codec import RESPONSE_PREFIX

#: Connecting: as FastHttpUser's default.
CONNECT_TIMEOUT_S = 60.0
#: Requests one run of the closed-loop task sends (see the module doc).
PER_TASK = 8


class HttpFailure(Exception):
    """A request the target answered wrongly (status, body)."""


class Connections:
    """One user's keep-alive connections to the target."""

    def __init__(self, address: tuple[str, int], size: int) -> None:
        self.address = address
        self.idle: list[gevent.socket.socket] = []
        self._slots = gevent.lock.BoundedSemaphore(size)

    def get(self) -> gevent.socket.socket:
        self._slots.acquire()
        if self.idle:
            return self.idle.pop()
        try:
            sock = gevent.socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            self._slots.release()
            raise
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def put(self, sock: gevent.socket.socket) -> None:
        self.idle.append(sock)
        self._slots.release()

    def drop(self, sock: gevent.socket.socket) -> None:
        sock.close()
        self._slots.release()

    def close(self) -> None:
        for sock in self.idle:
            sock.close()
        self.idle.clear()


class HttpPredictUser(LoadUserMixin, User):
    abstract = True
    base_url: ClassVar[str]
    path: ClassVar[str] = "/predict"
    payloads: ClassVar[list[tuple[bytes, dict[str, str]]]] = []
    #: A response header that marks an answer as a cold start (Lambda), or None.
    cold_header: ClassVar[str | None] = None
    #: Connections this user may open, as it needs them: a closed-loop user uses one; a
    #: stage's single open-loop user one per request in flight, up to max_inflight.
    connections: ClassVar[int] = 1

    def on_start(self) -> None:
        super().on_start()
        url = urlsplit(self.base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        self.pool = Connections((host, port), self.connections)
        netloc = f"{host}:{port}" if url.port else host
        self.requests = [build_request(netloc, self.path, body, headers)
                         for body, headers in self.payloads]

    def on_stop(self) -> None:
        self.pool.close()

    @task
    def predict(self) -> None:
        for _ in range(PER_TASK):
            self.step()

    def items(self) -> list[bytes]:
        return self.requests

    def send(self, item: bytes, intended: float | None = None, queued: bool = False) -> None:
        # Connection refused, reset, a timeout: raised, and reported as the failure.
        with self.timed("POST", "predict", intended, queued) as call:
            sock = self.pool.get()
            try:
                sock.sendall(item)
                answer = read_answer(sock)
            except BaseException:
                self.pool.drop(sock)
                raise
            if answer.close:
                self.pool.drop(sock)
            else:
                self.pool.put(sock)
            content = answer.body
            call.length = len(content)
            if answer.status != 200:
                call.failure = HttpFailure(f"HTTP {answer.status}: {content[:120]!r}")
            elif not content.startswith(RESPONSE_PREFIX):
                call.failure = HttpFailure("200 without a predictions body")
            if self.cold_header and answer.has_header(self.cold_header):
                call.context["cold"] = True


def make_user(spec: dict[str, Any], payloads: list[tuple[bytes, dict[str, str]]],
              control: LoadControl) -> type[HttpPredictUser]:
    attrs = {
        "abstract": False, "base_url": spec["url"], "path": spec.get("path", "/predict"),
        "payloads": payloads, "control": control, "_ids": itertools.count(),
        "cold_header": spec.get("cold_header"),
        "connections": int(spec.get("max_inflight", 1)),
    }
    return type("HttpPredict", (HttpPredictUser,), attrs)
