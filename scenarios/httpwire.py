"""The HTTP load user's wire format, apart from Locust (so it can be tested without
Locust's monkey-patching): each request built once, each answer read the short way when
it can be (see :mod:`scenarios.users.http`)."""

from __future__ import annotations

from typing import Any

from geventhttpclient.response import HTTPSocketResponse

#: Bytes asked of the socket at a time.
BLOCK = 65536


def build_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One POST as it goes on the wire (HTTP/1.1, keep-alive is its default)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()
              if name.lower() not in ("host", "content-length")]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Answer:
    """One HTTP response: status, body, whether the server closes the connection, and the
    header block (lower-cased) for :meth:`has_header`."""

    __slots__ = ("body", "close", "head", "status")

    def __init__(self, status: int, body: bytes, close: bool, head: bytes) -> None:
        self.status, self.body, self.close, self.head = status, body, close, head

    def has_header(self, name: str) -> bool:
        return b"\r\n" + name.lower().encode("latin-1") + b":" in self.head


def read_answer(sock: Any) -> Answer:
    """The response to the request just sent on ``sock`` (see the module doc)."""
    data = sock.recv(BLOCK)
    if not data:
        raise ConnectionError("connection closed before an answer")
    while (end := data.find(b"\r\n\r\n")) < 0:
        more = sock.recv(BLOCK)
        if not more:
            raise ConnectionError("connection closed before the end of the headers")
        data += more
    head = data[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if not head.startswith(b"http/1.1 ") or at < 0 or b"\r\ntransfer-encoding:" in head:
        return _parsed(sock, data)  # anything unusual: the full parser
    line_end = head.find(b"\r\n", at + 2)
    value = head[at + 17:line_end if line_end >= 0 else len(head)].strip()
    status = head[9:12]
    if not value.isdigit() or not status.isdigit() or status[:1] == b"1":
        return _parsed(sock, data)
    length = int(value)
    body = data[end + 4:]
    while len(body) < length:
        more = sock.recv(max(BLOCK, length - len(body)))
        if not more:
            raise ConnectionError("connection closed before the end of the body")
        body += more
    if len(body) > length:  # nothing was asked for beyond this answer
        raise ConnectionError(f"{len(body) - length} bytes beyond the answer's length")
    return Answer(int(status), body, b"\r\nconnection: close" in head, head)


def _parsed(sock: Any, data: bytes) -> Answer:
    response = HTTPSocketResponse(sock, method="POST", pre_buffered=data)
    body = response.read()
    head = "".join(f"\r\n{name}: {value}" for name, value in response.items()).lower()
    return Answer(response.status_code, body, response.should_close(),
                  head.encode("latin-1"))
