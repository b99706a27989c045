"""The HTTP load user's wire format, apart from Locust (so it can be tested without
Locust's monkey-patching): each request built once, each answer read the short way when
it can be (see :mod:`harness.loadgen.swarm.users.http`)."""

from __future__ import annotations

from typing import Any

from geventhttpclient.response import HTTPSocketResponse

#: Bytes asked of the socket at a time (an answer's body beyond it in one more call).
BLOCK = 16384


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

    def has_header(self, name: bytes) -> bool:
        """Whether the answer has header ``name`` (lower-case bytes)."""
        return b"\r\n" + name + b":" in self.head


def _closes(head: bytes) -> bool:
    """Whether a (lower-cased) HTTP/1.1 header block says ``Connection: close``."""
    at = head.find(b"\r\nconnection:")
    while at >= 0:
        line_end = head.find(b"\r\n", at + 2)
        value = head[at + 13:line_end if line_end >= 0 else len(head)]
        if b"close" in (token.strip() for token in value.split(b",")):
            return True
        at = head.find(b"\r\nconnection:", at + 2)
    return False


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
    # 1xx come before the answer; 204 and 304 have no body whatever their length says.
    if not value.isdigit() or not status.isdigit() or status[:1] == b"1" \
            or status in (b"204", b"304"):
        return _parsed(sock, data)
    length = int(value)
    body = data[end + 4:]
    if len(body) < length:
        parts = [body]
        have = len(body)
        while have < length:
            more = sock.recv(length - have)
            if not more:
                raise ConnectionError("connection closed before the end of the body")
            parts.append(more)
            have += len(more)
        body = b"".join(parts)
    # Bytes beyond the answer (nothing else was asked for): the answer stands, but the
    # connection is out of step and is not used again.
    close = len(body) > length or _closes(head)
    return Answer(int(status), body[:length], close, head)


def _parsed(sock: Any, data: bytes) -> Answer:
    response = HTTPSocketResponse(sock, method="POST", pre_buffered=data)
    body = response.read()
    head = "".join(f"\r\n{name}: {value}" for name, value in response.items()).lower()
    return Answer(response.status_code, body, response.should_close(),
                  head.encode("latin-1"))
