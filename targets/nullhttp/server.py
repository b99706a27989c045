"""The null HTTP server: ``python -m targets.nullhttp --port 8100 --cpus 1``.

HTTP/1.1 with keep-alive on asyncio's low-level protocol API (standard library only, no
framework, no model, no torch). ``POST /predict`` gets the null bundle's answer for one
row, prebuilt bytes; the request body is read and discarded by its ``Content-Length``,
however the bytes arrive (split across reads, or several pipelined requests in one).
``GET /health`` (and ``/healthz``, as the other HTTP targets spell it) answers
``{"status": "ok", "bundle": "null", "pid": ...}``. Other paths get 404, a wrong method
405; a malformed request line or header 400, a head over 64 KiB 431, a body over
``--max-body-bytes`` 413, a chunked body 501, HTTP/2+ 505, each answered and then the
connection closed (its framing can no longer be trusted). ``Connection: close`` (or
HTTP/1.0 without ``keep-alive``) closes after the answer.

Its job is to cost far less per request than the load generator, so calibration measures
the load generator: every response is built once (again each second, for its ``Date``),
and a request costs one head parse. Pinned to ``--cpus``; with several ``--workers`` each
is a process with its own event loop, all bound to one port with SO_REUSEPORT (the kernel
spreads connections). Meant for loopback: there is no idle or slow-client timeout.

For tests of the harness it can also be a *controlled* target: ``--delay-ms D`` answers
every prediction D ms after its request arrived (timers, so requests overlap: a fixed
service time at any concurrency), and ``--stall-after-s A --stall-s S`` freezes it once:
every prediction due between A and A + S seconds after the first one is held until the
freeze ends, as a server stopped by a long GC pause or a page-fault storm would be.
``--stall-s S`` alone freezes it when ``POST /stall`` arrives (a test times the freeze
against the load generator's windows, which move with its warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import email.utils
import http
import json
import os
import re
import signal
import sys
import time
from collections.abc import Sequence

from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.entrypoint import ServerSetup, exit_if_batching, fork_workers, prepare_server
from targets.entrypoint import add_arguments as add_common_arguments
from targets.monitor import exit_if_monitoring
from targets.wire import codec

NULL_BUNDLE = "null"
DEFAULT_PORT = 8100
HEALTH_PATHS = (b"/health", b"/healthz")
#: Request line plus headers; larger heads get 431. Node's default is 16 KiB and nginx
#: allows 4 x 8 KiB: nothing a benchmark client sends comes near 64 KiB.
MAX_HEAD_BYTES = 64 * 1024
#: Pending connections, as gunicorn's default: Locust's users connect all at once.
BACKLOG = 2048

# RFC 9110's token characters, for a method and a header name.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (\S+) HTTP/(\d)\.(\d)")
# A field value may not hold CR, LF or NUL (RFC 9110 5.5); surrounding blanks are not part
# of it. A line starting with a blank (obsolete line folding) does not match: 400.
_HEADER = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\r\n\x00]*?)[ \t]*")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def build_response(status: int, body: bytes, date: str, *, close: bool = False,
                   extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """One whole HTTP/1.1 response with a JSON body."""
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", f"Date: {date}",
             f"Content-Type: {codec.JSON_TYPE}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in extra]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def predict_body() -> bytes:
    """The null bundle's answer for one row, encoded as every HTTP target encodes it."""
    bundle = get_bundle(NULL_BUNDLE)
    bundle.load()
    body = codec.encode_predictions(serve_batch(bundle, bundle.example_requests()[0]))
    assert body.startswith(codec.RESPONSE_PREFIX)
    return body


class Answers:
    """Every response the server sends often, prebuilt; rebuilt each second for ``Date``
    (RFC 9110 6.6.1: an origin server with a clock sends it)."""

    def __init__(self, prediction: bytes, health: bytes) -> None:
        self._prediction = prediction
        self._health = health
        self.refresh()

    def refresh(self) -> None:
        self.date = email.utils.formatdate(usegmt=True)
        self.predict = build_response(200, self._prediction, self.date)
        self.predict_close = build_response(200, self._prediction, self.date, close=True)
        self.health = build_response(200, self._health, self.date)
        self.health_close = build_response(200, self._health, self.date, close=True)

    def error(self, status: int, message: str, *, close: bool,
              extra: Sequence[tuple[str, str]] = ()) -> bytes:
        return build_response(status, codec.encode_error(status, message), self.date,
                              close=close, extra=extra)


class Delay:
    """When a prediction's answer may go out: after the service time, and never during
    the one stall (answers due in it wait for its end). Times are the event loop's."""

    def __init__(self, service_s: float = 0.0, stall_after_s: float | None = None,
                 stall_s: float = 0.0) -> None:
        self.service_s = service_s
        self.stall_after_s = stall_after_s
        self.stall_s = stall_s
        #: When the stall starts (the event loop's time): ``stall_after_s`` after the
        #: first prediction, or when ``POST /stall`` arms it.
        self.stall_start: float | None = None
        #: The stall's start and end, wall-clock (``GET /stats``).
        self.stall_wall: list[float] | None = None
        #: How long each answer was really held (the event loop's timers fire up to a
        #: millisecond late): the service time a test should expect. ``GET /stats``.
        self.held_s: collections.deque[float] = collections.deque(maxlen=100_000)

    def stats(self) -> bytes:
        held = sorted(self.held_s)
        p50 = held[(len(held) - 1) // 2] * 1000.0 if held else None
        return json.dumps({"answers_held": len(held), "held_ms_p50": p50,
                           "stall": self.stall_wall}).encode()

    @property
    def active(self) -> bool:
        return self.service_s > 0 or self.stall_s > 0

    def arm(self, now: float, after_s: float = 0.0) -> list[float]:
        """The stall starts ``after_s`` from ``now``; returns its wall-clock span."""
        self.stall_start = now + after_s
        begin = time.time() + after_s
        self.stall_wall = [begin, begin + self.stall_s]
        return self.stall_wall

    def due(self, now: float) -> float:
        if self.stall_start is None and self.stall_after_s is not None:
            self.arm(now, self.stall_after_s)
        due = now + self.service_s
        start = self.stall_start
        if start is not None and start <= due < start + self.stall_s:
            due = start + self.stall_s
        return due


class NullHttpProtocol(asyncio.Protocol):
    """One connection: parse heads, discard bodies, answer in order."""

    def __init__(self, answers: Answers, max_body_bytes: int, delay: Delay | None = None
                 ) -> None:
        self.answers = answers
        self.max_body_bytes = max_body_bytes
        self.delay = delay if delay is not None and delay.active else None
        #: Delayed answers on this connection go out in order: none before this time.
        self.last_due = 0.0
        self.transport: asyncio.Transport | None = None
        #: Bytes of a head not yet complete.
        self.pending = b""
        #: Body bytes of the current request still to discard, then its answer.
        self.skip = 0
        self.answer = b""
        self.close_after = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport  # asyncio has set TCP_NODELAY on it

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.pending:
            data = self.pending + data
            self.pending = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            if self.skip:
                taken = min(self.skip, end - pos)
                self.skip -= taken
                pos += taken
                if self.skip:
                    break
                out.append(self.answer)
                if self.close_after:
                    self._finish(out)
                    return
                continue
            # Empty lines before a request line are ignored (RFC 9112 2.2).
            while data.startswith(b"\r\n", pos):
                pos += 2
            head_end = data.find(b"\r\n\r\n", pos)
            if head_end < 0 and end - pos <= MAX_HEAD_BYTES:
                self.pending = data[pos:]  # the rest of the head is still to come
                break
            if head_end < 0 or head_end - pos > MAX_HEAD_BYTES:
                out.append(self.answers.error(431, "request head exceeds 64 KiB", close=True))
                self._finish(out)
                return
            answer, length, close, expect_continue = self._parse(data[pos:head_end])
            pos = head_end + 4
            if length:  # answered once the body is discarded
                if expect_continue:
                    out.append(_CONTINUE)
                self.skip, self.answer, self.close_after = length, answer, close
                continue
            out.append(answer)
            if close:
                self._finish(out)
                return
        if out:
            self._write(out[0] if len(out) == 1 else b"".join(out))

    def _write(self, payload: bytes, close: bool = False) -> None:
        transport = self.transport
        assert transport is not None
        if self.delay is None:
            transport.write(payload)
            if close:
                transport.close()
            return
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        self.last_due = max(self.last_due, self.delay.due(arrived))
        held = self.delay.held_s

        def send() -> None:
            held.append(loop.time() - arrived)
            if not transport.is_closing():
                transport.write(payload)
                if close:
                    transport.close()

        loop.call_at(self.last_due, send)

    def _parse(self, head: bytes) -> tuple[bytes, int, bool, bool]:
        """``(answer, body bytes to discard first, close after, 100-continue wanted)`` for
        one request head."""
        lines = head.split(b"\r\n")
        request = _REQUEST_LINE.fullmatch(lines[0])
        if request is None:
            return self._refuse(400, "malformed request line")
        method, target, major, minor = request.groups()
        if major != b"1":
            return self._refuse(505, "only HTTP/1.x is served")
        keep_alive = minor != b"0"  # HTTP/1.1 connections persist unless told otherwise
        length: bytes | None = None
        has_host = expect_continue = False
        for line in lines[1:]:
            header = _HEADER.fullmatch(line)
            if header is None:
                return self._refuse(400, "malformed header line")
            name, value = header.groups()
            name = name.lower()
            if name == b"content-length":
                if not value.isdigit() or (length is not None and value != length):
                    return self._refuse(400, "invalid Content-Length")
                length = value
            elif name == b"host":
                has_host = True
            elif name == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            elif name == b"transfer-encoding":
                return self._refuse(501, "chunked request bodies are not supported; send "
                                         "Content-Length")
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if not has_host and minor != b"0":  # RFC 9112 3.2: a 1.1 request without Host
            return self._refuse(400, "missing Host header")
        size = int(length) if length is not None else 0
        if size > self.max_body_bytes:
            return self._refuse(413, f"body of {size} bytes exceeds {self.max_body_bytes}")
        close = not keep_alive
        return self._route(method, target, close), size, close, expect_continue

    def _refuse(self, status: int, message: str) -> tuple[bytes, int, bool, bool]:
        """An error answer, then close: the connection's framing can no longer be trusted."""
        return self.answers.error(status, message, close=True), 0, True, False

    def _route(self, method: bytes, target: bytes, close: bool) -> bytes:
        answers = self.answers
        if target == b"/predict":
            if method == b"POST":
                return answers.predict_close if close else answers.predict
            return answers.error(405, "use POST", close=close, extra=(("Allow", "POST"),))
        path = target.partition(b"?")[0]
        if path == b"/predict":
            return self._route(method, path, close)
        if path == b"/stats" and method == b"GET":
            body = self.delay.stats() if self.delay is not None else b"{}"
            return build_response(200, body, answers.date, close=close)
        if path == b"/stall" and method == b"POST" and self.delay is not None \
                and self.delay.stall_s > 0:
            span = self.delay.arm(asyncio.get_running_loop().time())
            return build_response(200, json.dumps({"stall": span}).encode(), answers.date,
                                  close=close)
        if path in HEALTH_PATHS:
            if method == b"GET":
                return answers.health_close if close else answers.health
            return answers.error(405, "use GET", close=close, extra=(("Allow", "GET"),))
        return answers.error(404, f"no route {path[:80].decode('latin-1')!r}", close=close)

    def _finish(self, out: list[bytes]) -> None:
        """Send what is answered, then close (asyncio flushes the buffer first)."""
        self.closing = True
        self._write(b"".join(out), close=True)

    # Flow control: a client that pipelines without reading stops being read.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()


async def run_server(host: str, port: int, max_body_bytes: int, reuse_port: bool,
                     delay: Delay | None = None) -> None:
    """Serve until SIGTERM or SIGINT; raises OSError when the address cannot be bound."""
    loop = asyncio.get_running_loop()
    health = json.dumps({"status": "ok", "bundle": NULL_BUNDLE, "pid": os.getpid()}).encode()
    answers = Answers(predict_body(), health)

    def refresh() -> None:
        answers.refresh()
        loop.call_later(1.0, refresh)

    loop.call_later(1.0, refresh)
    server = await loop.create_server(
        lambda: NullHttpProtocol(answers, max_body_bytes, delay), host, port,
        reuse_port=reuse_port, backlog=BACKLOG,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"worker {os.getpid()} serving", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def _serve_one(args: argparse.Namespace, setup: ServerSetup, reuse_port: bool) -> int:
    try:
        delay = Delay(args.delay_ms / 1000.0, args.stall_after_s, args.stall_s)
        asyncio.run(run_server(args.host, args.port, setup.limits.max_body_bytes, reuse_port,
                               delay))
    except OSError as exc:
        print(f"error: cannot bind {args.host}:{args.port} ({exc.strerror or exc}). "
              "Choose another --port", file=sys.stderr, flush=True)
        return 1
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_port=DEFAULT_PORT, default_threads=1,
                         threads_help="must be 1: each worker is one event loop")
    parser.set_defaults(bundle=NULL_BUNDLE)
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="answer each prediction this long after it arrived (a fixed "
                             "service time, requests overlapping; for tests)")
    parser.add_argument("--stall-after-s", type=float, default=None,
                        help="freeze once, this long after the first prediction (for tests)")
    parser.add_argument("--stall-s", type=float, default=0.0,
                        help="how long the freeze lasts (alone: it starts when POST /stall "
                             "arrives)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.bundle != NULL_BUNDLE:
        parser.error(f"--bundle {args.bundle}: this server answers only the null bundle's "
                     f"fixed prediction; serve {args.bundle} with flask, grpc or lambda")
    if args.delay_ms < 0 or args.stall_s < 0 or (args.stall_after_s or 0) < 0:
        parser.error("--delay-ms, --stall-after-s and --stall-s must be >= 0")
    if args.threads not in (None, 1):
        parser.error(f"--threads {args.threads}: each worker is one event loop; "
                     "use --workers for more")


def serve(args: argparse.Namespace) -> int:
    exit_if_batching(args, "the null HTTP server has no model to batch for")
    exit_if_monitoring(args, "the null HTTP server is the load generator's calibration: it "
                             "has no model to watch")
    setup = prepare_server(args)
    print(setup.banner("null-http", args), file=sys.stderr, flush=True)
    if setup.workers == 1:
        return _serve_one(args, setup, reuse_port=False)
    return fork_workers(setup.workers, lambda: _serve_one(args, setup, reuse_port=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.nullhttp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return serve(args)
