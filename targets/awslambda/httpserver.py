"""A minimal HTTP/1.1 server on asyncio, for the Lambda emulator's three APIs.

Just what the peers need (awslambdaric's libcurl, boto3, Locust's FastHttpUser):
Content-Length bodies, keep-alive, one write per response, and TCP_NODELAY. The research
found Python's http.server writing headers and body separately and Nagle's algorithm with
delayed ACKs then adding ~40 ms to every invocation. Chunked request bodies are refused
with 411; a head over 64 KiB with 431; a body over the limit with 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

log = logging.getLogger(__name__)

#: Request line and headers together; larger gets 431.
MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Payload Too Large", 415: "Unsupported Media Type",
           429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 504: "Gateway Timeout"}


@dataclass
class Request:
    method: str
    #: Percent-decoded path, without the query string.
    path: str
    query: str
    #: Header names lower-cased; repeated headers joined with ", " (as Lambda does).
    headers: dict[str, str]
    body: bytes
    peer: str = ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def render(self, keep_alive: bool, head_only: bool = False) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        # Header values a function returned may hold any text: never fail on them.
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        return head if head_only else head + self.body


Handler = Callable[[Request], Awaitable[Response]]


def json_response(status: int, body: bytes, *extra: tuple[str, str]) -> Response:
    return Response(status, body, [("Content-Type", "application/json"), *extra])


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str], bool]:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError as exc:
        raise _BadRequest(400, "malformed request line") from exc
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(400, "malformed header line")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    path, _, query = target.partition("?")
    keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    return method, unquote(path), query, headers, keep_alive


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      handler: Handler, max_body: int) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer = writer.get_extra_info("peername")
    peer_ip = peer[0] if isinstance(peer, tuple) else ""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed between requests
            except asyncio.LimitOverrunError:
                writer.write(Response(431, b"request head too large").render(False))
                return
            try:
                method, path, query, headers, keep_alive = _parse_head(head[:-4])
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    raise _BadRequest(411, "chunked request bodies are not supported")
                declared = headers.get("content-length", "0").strip()
                if not declared.isdigit():  # int() would take "1_0" or "+5"
                    raise _BadRequest(400, "malformed Content-Length")
                length = int(declared)
                if length > max_body:
                    raise _BadRequest(413, f"body of {length} bytes exceeds {max_body}")
            except _BadRequest as exc:
                writer.write(Response(exc.status, str(exc).encode()).render(False))
                return
            if length and headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await reader.readexactly(length) if length else b""
            try:
                response = await handler(Request(method, path, query, headers, body, peer_ip))
            except Exception as exc:  # a bug in the emulator: answer, never drop the client
                log.exception("error handling %s %s", method, path)
                writer.write(Response(500, f"internal error: {type(exc).__name__}".encode())
                             .render(False))
                return
            writer.write(response.render(keep_alive, head_only=method == "HEAD"))
            if writer.transport.get_write_buffer_size() > 1 << 16:
                await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()


async def start(handler: Handler, host: str, port: int, max_body: int,
                reuse_port: bool = False) -> asyncio.Server:
    """Listen on ``host:port`` (0 = any free port); the caller reads the bound port back."""
    return await asyncio.start_server(
        lambda r, w: _connection(r, w, handler, max_body), host, port, limit=MAX_HEAD,
        reuse_port=reuse_port or None,
    )


def bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port
