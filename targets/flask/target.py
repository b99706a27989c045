"""The Flask target as the orchestrator sees it: a gunicorn process on loopback."""

from __future__ import annotations

from targets.flask.server import DEFAULT_THREADS
from targets.httptarget import HttpServedTarget


class FlaskTarget(HttpServedTarget):
    name = "flask"
    server_module = "targets.flask.server"
    server_kind = "gunicorn gthread + Flask"
    default_threads = DEFAULT_THREADS

