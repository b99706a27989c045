"""The Flask target as the orchestrator sees it: a gunicorn process on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets import codec
from targets.base import HttpPayload, LoadSpec, TargetBase
from targets.cpuset import format_cpus
from targets.errors import TargetError
from targets.flask.server import DEFAULT_THREADS
from targets.httpclient import HttpClient
from targets.process import ServerProcess, free_port, python_module_command

if TYPE_CHECKING:
    import numpy as np

    from targets.bundle import Prediction

#: Model load (and digits training at first use) happens before the first health answer.
START_TIMEOUT_S = 120.0


class FlaskTarget(TargetBase):
    name = "flask"

    def __init__(self, bundle: str, cpus: list[int], encoding: str, *, host: str = "127.0.0.1",
                 port: int | None = None, workers: int | None = None,
                 threads: int = DEFAULT_THREADS, log_path: Path | None = None,
                 limits: codec.Limits = codec.DEFAULT_LIMITS) -> None:
        self.bundle = bundle
        self.cpus = list(cpus)
        self.encoding = encoding
        self.host = host
        self.port = port
        self.workers = workers or len(self.cpus)
        self.threads = threads
        self.log_path = log_path
        self.limits = limits
        self.startup_s: float | None = None
        self._server: ServerProcess | None = None
        self._client: HttpClient | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)
        command = python_module_command(
            "targets.flask.server", "--bundle", self.bundle, "--host", self.host,
            "--port", str(self.port), "--cpus", format_cpus(self.cpus),
            "--workers", str(self.workers), "--threads", str(self.threads),
            "--max-body-bytes", str(self.limits.max_body_bytes),
            "--max-batch", str(self.limits.max_batch),
        )
        self._server = ServerProcess(command, log_path=self.log_path)
        self._client = HttpClient(self.host, self.port)
        self._server.launch()
        # Launch to first good answer: the cold start of this deployment.
        self.startup_s = self._server.wait_ready(self.health, START_TIMEOUT_S, "flask server")

    def health(self) -> bool:
        """200 from ``/healthz``, answered by one of *our* server's processes (the port was
        free when chosen, but another program could have taken it since)."""
        if self._client is None or self._server is None:
            return False
        try:
            status, body = self._client.request("GET", "/healthz")
            pid = json.loads(body).get("pid") if status == 200 else None
        except (TargetError, ValueError, AttributeError):
            return False
        return pid is not None and pid in {p.pid for p in self._server.tree()}

    def request(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self._client is not None, "start() first"
        return self._client.request("POST", "/predict", body, headers)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        body, headers = codec.encode_request(batch, self.encoding)
        status, answer = self.request(body, headers)
        if status != 200:
            raise TargetError(
                f"flask answered {status} to a request in-process serving answers: "
                f"{answer[:200]!r}. See its log ({self.log_path})"
            )
        return codec.decode_predictions(answer)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "process",
            "server": "gunicorn gthread + Flask",
            "url": self.url,
            "cpus": self.cpus,
            "workers": self.workers,
            "threads_per_worker": self.threads,
            "torch_threads_per_worker": max(1, len(self.cpus) // self.workers),
            "encoding": self.encoding,
            "startup_s": self.startup_s,
            "max_body_bytes": self.limits.max_body_bytes,
            "max_batch": self.limits.max_batch,
            "pid": self._server.pid if self._server and self._server.proc else None,
        }

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        assert self._server is not None, "start() first"
        payloads: list[HttpPayload] = []
        for example in examples:
            body, headers = codec.encode_request(example, self.encoding)
            payloads.append({"body": body, "headers": headers})
        return {
            "protocol": "http", "url": self.url, "path": "/predict", "payloads": payloads,
            "cpus": self.cpus, "watch_pids": [self._server.pid],
        }

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None:
            self._server.stop()
            self._server = None

