"""The Flask target as the orchestrator sees it: a gunicorn process on loopback."""

from __future__ import annotations

import json

from targets.errors import TargetError
from targets.flask.server import DEFAULT_THREADS
from targets.httptarget import HttpServedTarget


class FlaskTarget(HttpServedTarget):
    name = "flask"
    server_module = "targets.flask.server"
    server_kind = "gunicorn gthread + Flask"
    default_threads = DEFAULT_THREADS

    def _serving_pid(self) -> int | None:
        if self._client is None:
            return None
        try:
            status, body = self._client.request("GET", "/healthz")
            pid = json.loads(body).get("pid") if status == 200 else None
        except (TargetError, ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) else None
