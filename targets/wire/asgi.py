"""What the ASGI servers (the FastAPI target, the Ray Serve replica) share: reading a
request body under the codec's limit, as the Flask app reads it from WSGI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from targets.errors import RequestError

if TYPE_CHECKING:
    from starlette.requests import Request


async def read_body(request: Request, max_body: int) -> bytes:
    """The body, at most ``max_body + 1`` bytes of it: a declared length over the limit
    is refused unread (413), and a chunked body (which declares none) is read only until
    it passes the limit (the codec then answers 413)."""
    declared = request.headers.get("content-length") or ""
    if declared.isdigit() and int(declared) > max_body:
        raise RequestError(413, f"body of {declared} bytes exceeds {max_body}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_body:
            break
    return b"".join(chunks)
