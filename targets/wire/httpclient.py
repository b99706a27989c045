"""A minimal keep-alive HTTP client for health checks and parity (not for load).

The load generator's HTTP user uses geventhttpclient; the orchestrator only needs a few
requests, so the standard library is enough and adds no dependency.
"""

from __future__ import annotations

import http.client

from targets.errors import TargetError


class HttpClient:
    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send one request; returns (status, body). Reconnects once on a stale connection."""
        status, answer, _ = self.request_full(method, path, body, headers)
        return status, answer

    def request_full(self, method: str, path: str, body: bytes | None = None,
                     headers: dict[str, str] | None = None
                     ) -> tuple[int, bytes, dict[str, str]]:
        """Like :meth:`request`, with the response's headers (names lower-cased)."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout_s)
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                response = self._conn.getresponse()
                answer = response.read()
                return (response.status, answer,
                        {k.lower(): v for k, v in response.getheaders()})
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 2:
                    raise TargetError(
                        f"{method} http://{self.host}:{self.port}{path} failed: {exc}"
                    ) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
