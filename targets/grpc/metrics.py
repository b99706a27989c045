"""The gRPC target's metrics endpoint: ``GET /metrics`` over HTTP on ``--metrics-port``.

gRPC speaks HTTP/2 with its own framing, so Prometheus scrapes a side port. The
supervising process (or the only server process, with one worker) answers it, rendering
every server process's metrics from the multiprocess folder
(:func:`targets.monitor.multiprocess_dir`). The socket is bound before the workers fork
(a taken port is an error at once) and served by a thread started after they have forked
(:func:`targets.entrypoint.fork_workers`' ``on_forked``); each worker closes its copy.
"""

from __future__ import annotations

import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from targets.monitor import exposition


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log
        pass


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ.get("PATH_INFO") not in ("/metrics", "/"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: GET /metrics\n"]
    body, content_type = exposition()
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Length", str(len(body)))])
    return [body] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]


class MetricsServer:
    """An HTTP server of the multiprocess metrics on ``host:port``, bound at once."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client.exposition import ThreadingWSGIServer

        class Server(ThreadingWSGIServer):
            # As the gRPC server binds: an IPv6 address ("::", "::1") on an IPv6 socket.
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.httpd = make_server(host, port, _app, server_class=Server,
                                 handler_class=_Quiet)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        name="deploybench-metrics", daemon=True)
        self._thread.start()

    def close_in_child(self) -> None:
        """In a forked worker: its copy of the listening socket closed."""
        self.httpd.socket.close()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
