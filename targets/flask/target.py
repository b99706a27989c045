"""The Flask target as the orchestrator sees it: a gunicorn server (a local process or a
container), spoken to through the HTTP prediction API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from targets.flask.server import DEFAULT_THREADS, DEFAULT_WORKER_CLASS
from targets.served import HttpServedTarget


@dataclass(frozen=True)
class FlaskOptions:
    """``run --flask-workers/--flask-threads/--flask-worker-class`` (None: the default)."""

    workers: int | None = None
    threads: int | None = None
    #: gunicorn's worker class: "gevent", "gthread" or "sync".
    worker_class: str | None = None


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
