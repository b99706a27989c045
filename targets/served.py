"""What the served targets (Flask, FastAPI, gRPC, the Lambda emulator, the null HTTP
server) share as the orchestrator sees them: a server started by a runtime with the same
arguments, spoken to through its protocol's client, health-checked by PID, stopped by PID.

A served target is composed, not specialised per runtime: its runtime (a local process,
or a Docker container) is given to it, and its client (:class:`targets.base.PredictClient`)
is the one an external endpoint of the same protocol uses.

With ``batching`` the server is started with ``--batching`` and writes its batch log
(:mod:`targets.batching`) to :attr:`ServedTarget.batch_log_dir`, beside its own log: the
folder a container runtime mounts, at the same path, so the paths agree inside and out.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from targets.base import PredictClient, TargetBase
from targets.entrypoint import threads_for
from targets.monitoring import OFF, Monitoring
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import LOCAL, free_port
from targets.wire import codec
from targets.wire.httpapi import HttpApiClient

if TYPE_CHECKING:
    import numpy as np

    from targets.base import LoadSpec
    from targets.batching import BatchingSpec
    from targets.bundles.protocol import Prediction
    from targets.runtimes.protocol import Runtime, Server

#: Model load (and digits training at first use) happens before the first health answer.
START_TIMEOUT_S = 120.0

C = TypeVar("C", bound=PredictClient)


class ServedTarget(TargetBase, Generic[C]):
    """Subclasses name their server module and say how to build their client."""

    #: The deployment (and its container image, deploybench-NAME); an instance's ``name``
    #: is its result's (flask-binary with --encodings).
    name: str
    #: The module run as ``python -m MODULE`` (it takes targets.entrypoint's arguments).
    server_module: str
    #: What describe() says the server is.
    server_kind: str
    #: Threads per worker when not given (the server module's own default).
    default_threads: int
    #: Under batching, each request waiting in a batch holds one of the worker's threads
    #: (gthread, gRPC's pool; Ray Serve's max_ongoing_requests): at least max_batch of
    #: them. False where an event loop holds them (FastAPI). As the server module says.
    batch_waits_in_threads = True

    def __init__(self, bundle: str, cpus: list[int], encoding: str, *, host: str = "127.0.0.1",
                 port: int | None = None, workers: int | None = None,
                 threads: int | None = None,
                 log_path: Path | None = None,
                 limits: codec.Limits = codec.DEFAULT_LIMITS,
                 runtime: Runtime = LOCAL,
                 batching: BatchingSpec | None = None,
                 monitoring: Monitoring = OFF) -> None:
        self.bundle = bundle
        self.cpus = list(cpus)
        self.encoding = encoding
        self.host = host
        self.port = port
        self.workers = workers or max(1, len(self.cpus))
        #: Dynamic batching in every worker (None: one forward pass per request).
        self.batching = batching
        # Under batching, a thread per request waiting in a batch (threads_for says why).
        self.threads = threads or threads_for(batching, self.default_threads,
                                              self.batch_waits_in_threads)
        self.log_path = log_path
        self.limits = limits
        #: --metrics and --log-predictions (targets.monitoring).
        self.monitoring = monitoring
        #: The metrics endpoint's port, when it is a side port (chosen at start).
        self.metrics_port: int | None = None
        #: Where the server runs: a local process, or a container (--runtime docker).
        self.runtime = runtime
        self.startup_s: float | None = None
        self._server: Server | None = None
        self._client: C | None = None
        #: Folders made for what the server writes when it has no log_path, by kind.
        self._temp_dirs: dict[str, Path] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def batch_log_dir(self) -> Path | None:
        """Where the server's workers write their batch logs under batching (None when
        off): ``NAME-batches`` beside the server's log, or a temporary folder when it has
        none (a container runtime mounts only the log's folder: without a log_path a
        containerised server's batch log stays inside its container). Read it with
        :func:`targets.batching.read_batch_log`."""
        return None if self.batching is None else self._beside_log("batches")

    def _beside_log(self, what: str) -> Path:
        """``NAME-WHAT`` beside the server's log, or a temporary folder made once when it
        has none (kept after the run: it holds what the server wrote)."""
        if self.log_path is not None:
            return self.log_path.parent / f"{self.name}-{what}"
        if what not in self._temp_dirs:
            self._temp_dirs[what] = Path(tempfile.mkdtemp(
                prefix=f"deploybench-{self.name}-{what}-"))
        return self._temp_dirs[what]

    #: Whether the server's metrics are on a side port (--metrics-port), not its own.
    metrics_side_port = False

    @property
    def prediction_log_dir(self) -> Path | None:
        """Where the server logs predictions (``NAME-predictions`` beside its log, or a
        temporary folder without one); None when it does not log."""
        return self._beside_log("predictions") if self.monitoring.log_rate else None

    @property
    def metrics_url(self) -> str | None:
        """The URL the load generator scrapes (None: metrics off)."""
        if not self.monitoring.metrics or self.port is None:
            return None
        port = self.metrics_port if self.metrics_side_port else self.port
        return f"http://{self.host}:{port}/metrics"

    def monitoring_arguments(self) -> list[str]:
        """``--metrics`` (and ``--metrics-port``), ``--log-predictions`` and
        ``--prediction-log-dir``, as asked."""
        out: list[str] = []
        if self.monitoring.metrics:
            out.append("--metrics")
            if self.metrics_side_port:
                if self.metrics_port is None:
                    self.metrics_port = free_port(self.host)
                out += ["--metrics-port", str(self.metrics_port)]
        folder = self.prediction_log_dir
        if folder is not None:
            out += ["--log-predictions", repr(self.monitoring.log_rate),
                    "--prediction-log-dir", str(folder)]
        return out

    def batching_arguments(self) -> list[str]:
        """``--batching`` and ``--batch-log-dir``, when batching."""
        folder = self.batch_log_dir
        if self.batching is None or folder is None:
            return []
        return ["--batching", str(self.batching), "--batch-log-dir", str(folder)]

    # -- per deployment ---------------------------------------------------------------
    def make_client(self) -> C:
        """The protocol's client for the server at ``host:port``."""
        raise NotImplementedError

    def server_arguments(self) -> list[str]:
        """Arguments of this kind of server beyond the common ones."""
        return []

    def container_memory_mb(self) -> int | None:
        """This target's default container memory limit (None: 2 GB per target CPU)."""
        return None

    # -- shared ---------------------------------------------------------------------
    @property
    def client(self) -> C:
        assert self._client is not None, "start() first"
        return self._client

    def _connect(self) -> None:
        self._client = self.make_client()

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def start(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)
        self._server = self.runtime.server(
            type(self).name, self.server_module,
            ["--host", self.host, "--port", str(self.port), "--cpus", format_cpus(self.cpus),
             "--workers", str(self.workers), "--threads", str(self.threads),
             "--max-body-bytes", str(self.limits.max_body_bytes),
             "--max-batch", str(self.limits.max_batch), *self.batching_arguments(),
             *self.monitoring_arguments(), *self.server_arguments()],
            bundle=self.bundle, cpus=self.cpus, log_path=self.log_path,
            memory_mb=self.container_memory_mb())
        self._connect()
        self._server.launch()
        # Launch to first good answer: the cold start of this deployment.
        self.startup_s = self._server.wait_ready(self.health, START_TIMEOUT_S,
                                                 f"{self.name} server")

    def health(self) -> bool:
        """Healthy, and answered by one of *our* server's processes (the port was free
        when chosen, but another program could have taken it since)."""
        if self._server is None or self._client is None:
            return False
        health = self._client.probe()
        return health.ok and health.pid is not None and self._server.owns(health.pid)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        return self.client.predict(batch)

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        assert self._server is not None, "start() first"
        spec: LoadSpec = {**self.client.load_spec(examples), "cpus": self.cpus,
                          "watch_pids": [self._server.pid]}
        if self.metrics_url is not None:
            spec["metrics_url"] = self.metrics_url
        return spec

    def cold_start(self, example: np.ndarray) -> dict[str, Any]:
        """Restart the server and time it from launch to its first good answer."""
        self.stop()
        launched = time.perf_counter()
        self.start()  # returns once the health check passes
        ready = time.perf_counter()
        self.predict(example)
        done = time.perf_counter()
        return {"total_s": done - launched, "ready_s": ready - launched,
                "first_request_ms": (done - ready) * 1000.0,
                "definition": "server launched to its first good answer (its health check "
                              "passing, then one prediction)"}

    def redeploy(self, example: np.ndarray) -> dict[str, Any]:
        """A new model version, blue/green: a new server started beside the running one
        (which keeps serving), timed from launch to its first prediction; then the old
        one is stopped and this target speaks to the new one. If the new one fails, it
        is stopped and the old one is kept, serving as before."""
        old_server, old_port, old_startup = self._server, self.port, self.startup_s
        self._disconnect()
        self._server, self.port = None, None
        launched = time.perf_counter()
        try:
            self.start()  # a free port, the same arguments; returns once healthy
            ready = time.perf_counter()
            predictions = self.predict(example)
            done = time.perf_counter()
        except BaseException:
            self._disconnect()
            if self._server is not None:
                self._server.stop()
            self._server, self.port, self.startup_s = old_server, old_port, old_startup
            self._connect()
            raise
        if old_server is not None:
            old_server.stop()
        return {"total_s": done - launched, "ready_s": ready - launched,
                "first_request_ms": (done - ready) * 1000.0, "predictions": predictions,
                "kind": "new server beside the old",
                "definition": "a new server started beside the running one (blue/green), "
                              "launch to its first good prediction; then the old one "
                              "stopped"}

    def exit_note(self) -> str | None:
        """How the server ended, if it did (the runner adds it to a failure)."""
        if self._server is None:
            return None
        note = self._server.exit_note()
        return f"{note} (log: {self.log_path})" if note and self.log_path else note

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server and self._server.proc else None

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "process",
            "server": self.server_kind,
            "address": self.address,
            "cpus": self.cpus,
            "workers": self.workers,
            "threads_per_worker": self.threads,
            "torch_threads_per_worker": max(1, len(self.cpus) // self.workers),
            "encoding": self.encoding,
            "startup_s": self.startup_s,
            "max_body_bytes": self.limits.max_body_bytes,
            "max_batch": self.limits.max_batch,
            # As --batching writes it (max_batch=N,max_wait_ms=M); None: not batching.
            "batching": None if self.batching is None else str(self.batching),
            "monitoring": {**self.monitoring.describe(), "metrics_url": self.metrics_url,
                           "prediction_log_dir": None if self.prediction_log_dir is None
                           else str(self.prediction_log_dir)},
            "pid": self.server_pid,
            **(self._server.describe() if self._server is not None else {}),
        }

    def final_facts(self) -> dict[str, Any]:
        """Figures read once the load is over (a container's memory, as Docker counts it)."""
        return self._server.read_stats() if self._server is not None else {}

    def stop(self) -> None:
        self._disconnect()
        if self._server is not None:
            self._server.stop()
            self._server = None


class HttpServedTarget(ServedTarget[HttpApiClient]):
    """A server of the HTTP prediction API (Flask, FastAPI, the Lambda Function URL, null
    HTTP)."""

    #: How long the orchestrator's own requests may take (a Lambda cold start included).
    client_timeout_s = 30.0
    #: ``GET`` here answers ``{"pid": ...}`` with 200 once the server is ready.
    health_path = "/healthz"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def make_client(self) -> HttpApiClient:
        assert self.port is not None
        return HttpApiClient(self.host, self.port, self.encoding, health_path=self.health_path,
                             timeout_s=self.client_timeout_s, who=self.name,
                             hint=f". See its log ({self.log_path})")

    def request_with_headers(self, body: bytes, headers: dict[str, str]
                             ) -> tuple[int, bytes, dict[str, str]]:
        """POST /predict: (status, body, response headers with lower-case names)."""
        return self.client.post(body, headers)

    def request(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        status, answer, _ = self.request_with_headers(body, headers)
        return status, answer

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url}
