"""The Flask target as the orchestrator sees it: a gunicorn process on loopback."""

from __future__ import annotations

from typing import Any

from targets.flask.server import DEFAULT_THREADS, DEFAULT_WORKER_CLASS
from targets.httptarget import HttpServedTarget


class FlaskTarget(HttpServedTarget):
    name = "flask"
    server_module = "targets.flask.server"
    default_threads = DEFAULT_THREADS

    def __init__(self, *args: Any, worker_class: str = DEFAULT_WORKER_CLASS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: gunicorn's worker class: "gevent", "gthread" or "sync".
        self.worker_class = worker_class
        self.server_kind = f"gunicorn {worker_class} + Flask"

    def server_arguments(self) -> list[str]:
        return ["--worker-class", self.worker_class]
