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
each socket first, where this one polls only a connection idle for a second or more,
which the server may have closed) and without a socket timeout (gevent would arm a timer for every
read; the stage's drain timeout bounds a request that never answers). A connection the
server closes is dropped; nothing is retried (a retry would hide a failure). A
closed-loop task sends several requests in turn, so Locust's per-task bookkeeping is
paid once for them (a user told to stop gracefully stops after its request in flight,
as Locust's own task loop does).

Every answer is decoded as a client would (orjson, into predictions) and checked: one
prediction per request row, each a label among the expected number of finite
probabilities (``targets.wire.codec.answer_problem``). A request fails on a transport error
or timeout, a status other than 200, or a 200 whose body is not such an answer. The
whole load-generator process's CPU per request is recorded by every stage as
``loadgen_cpu_ms_per_request``.
"""

from __future__ import annotations

import itertools
import socket
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent.lock
import gevent.select
import gevent.socket
from locust import User, task
from locust.user.task import LOCUST_STATE_STOPPING

from harness.loadgen.control import LoadControl
from harness.loadgen.swarm.httpwire import build_request, read_answer
from harness.loadgen.swarm.users.closedloop import LoadUserMixin, answer_shapes
from targets.wire.codec import AnswerShape, answer_problem, decode_predictions

#: Connecting: as FastHttpUser's default.
CONNECT_TIMEOUT_S = 60.0
#: Requests one run of the closed-loop task sends (see the module doc).
PER_TASK = 8
#: An idle connection unused this long is checked before use (see Connections.get).
STALE_AFTER_S = 1.0


class HttpFailure(Exception):
    """A request the target answered wrongly (status, body)."""


class Connections:
    """One user's keep-alive connections to the target."""

    def __init__(self, address: tuple[str, int], size: int) -> None:
        self.address = address
        #: Idle connections, each with when it was last used (time.monotonic()).
        self.idle: list[tuple[gevent.socket.socket, float]] = []
        self._slots = gevent.lock.BoundedSemaphore(size)

    def get(self) -> gevent.socket.socket:
        self._slots.acquire()
        try:
            while self.idle:
                sock, used = self.idle.pop()
                # One idle for a while may have been closed by the server (keep-alive
                # timeouts are seconds to minutes): it would fail the request sent on it.
                # A readable idle socket is one the server closed (or answered out of
                # turn). Recently used ones are not polled: that is a syscall a request.
                if time.monotonic() - used < STALE_AFTER_S or not _readable(sock):
                    return sock
                sock.close()
            sock = gevent.socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S)
            try:
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except BaseException:
                sock.close()
                raise
            return sock
        except BaseException:
            self._slots.release()
            raise

    def put(self, sock: gevent.socket.socket) -> None:
        self.idle.append((sock, time.monotonic()))
        self._slots.release()

    def drop(self, sock: gevent.socket.socket) -> None:
        sock.close()
        self._slots.release()

    def close(self) -> None:
        for sock, _ in self.idle:
            sock.close()
        self.idle.clear()


def _readable(sock: gevent.socket.socket) -> bool:
    ready, _, _ = gevent.select.select([sock], [], [], 0.0)
    return bool(ready)


class HttpPredictUser(LoadUserMixin, User):
    abstract = True
    base_url: ClassVar[str]
    path: ClassVar[str] = "/predict"
    payloads: ClassVar[list[tuple[bytes, dict[str, str]]]] = []
    #: What a well-formed answer to each payload holds (None: not known).
    answers: ClassVar[list[AnswerShape | None]] = []
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
        name = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
        netloc = f"{name}:{port}" if url.port else name
        self.cold = self.cold_header.lower().encode("latin-1") if self.cold_header else None
        self.requests = [(build_request(netloc, self.path, body, headers), shape)
                         for (body, headers), shape in zip(self.payloads, self.answers,
                                                            strict=True)]

    def on_stop(self) -> None:
        self.pool.close()

    @task
    def predict(self) -> None:
        for _ in range(PER_TASK):
            self.step()
            # Told to stop gracefully (a timeline's ramp-down): after this request, as
            # Locust's own task loop would.
            if self._state == LOCUST_STATE_STOPPING:
                return

    def items(self) -> list[tuple[bytes, AnswerShape | None]]:
        return self.requests

    def send(self, item: tuple[bytes, AnswerShape | None], intended: float | None = None,
             queued: bool = False) -> None:
        wire, shape = item
        # Connection refused, reset, a timeout: raised, and reported as the failure.
        back: tuple[gevent.socket.socket, bool] | None = None
        with self.timed("POST", "predict", intended, queued) as call:
            sock = self.pool.get()
            try:
                sock.sendall(wire)
                answer = read_answer(sock)
            except BaseException:
                self.pool.drop(sock)
                raise
            back = (sock, answer.close)
            content = answer.body
            call.length = len(content)
            if answer.status != 200:
                call.failure = HttpFailure(f"HTTP {answer.status}: {content[:120]!r}")
            else:
                problem = answer_problem(lambda: decode_predictions(content), shape)
                if problem is not None:
                    call.failure = HttpFailure(f"200 with {problem}")
            if self.cold is not None and answer.has_header(self.cold):
                call.context["cold"] = True
        # The connection goes back (or is closed) once the call is timed: the pool's
        # bookkeeping is the harness's, not the request's.
        if back is not None:
            sock, close = back
            if close:
                self.pool.drop(sock)
            else:
                self.pool.put(sock)


def make_user(spec: dict[str, Any], payloads: list[tuple[bytes, dict[str, str]]],
              control: LoadControl) -> type[HttpPredictUser]:
    attrs = {
        "abstract": False, "base_url": spec["url"], "path": spec.get("path", "/predict"),
        "payloads": payloads, "control": control, "_ids": itertools.count(),
        "cold_header": spec.get("cold_header"),
        "connections": int(spec.get("max_inflight", 1)),
        "answers": answer_shapes(spec, len(payloads)),
    }
    return type("HttpPredict", (HttpPredictUser,), attrs)
