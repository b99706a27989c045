"""What the served targets (Flask, gRPC) share as the orchestrator sees them: a server
process on loopback, started with the same arguments, health-checked by PID, stopped by PID.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets.base import TargetBase
from targets.bundles.user import container_view
from targets.runtimes.container import ContainerProcess, DockerRuntime
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import ServerProcess, free_port, python_module_command
from targets.wire import codec

if TYPE_CHECKING:
    import numpy as np

    from targets.base import LoadSpec
    from targets.bundles.protocol import Prediction

#: Model load (and digits training at first use) happens before the first health answer.
START_TIMEOUT_S = 120.0


class ServedTarget(TargetBase):
    """Subclasses name their server module and speak its protocol."""

    name: str
    #: The module run as ``python -m MODULE`` (it takes targets.entrypoint's arguments).
    server_module: str
    #: What describe() says the server is.
    server_kind: str
    #: Threads per worker when not given (the server module's own default).
    default_threads: int

    def __init__(self, bundle: str, cpus: list[int], encoding: str, *, host: str = "127.0.0.1",
                 port: int | None = None, workers: int | None = None,
                 threads: int | None = None,
                 log_path: Path | None = None,
                 limits: codec.Limits = codec.DEFAULT_LIMITS) -> None:
        self.bundle = bundle
        self.cpus = list(cpus)
        self.encoding = encoding
        self.host = host
        self.port = port
        self.workers = workers or max(1, len(self.cpus))
        self.threads = threads or self.default_threads
        self.log_path = log_path
        self.limits = limits
        self.startup_s: float | None = None
        self._server: ServerProcess | ContainerProcess | None = None
        #: --runtime docker: run the server in a container (targets.runtimes.container).
        self.docker: DockerRuntime | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- protocol, per subclass -------------------------------------------------------
    def _connect(self) -> None:
        """Create the client used for health checks and parity."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def _serving_pid(self) -> int | None:
        """The PID the server says it runs in, if it answers its health check now."""
        raise NotImplementedError

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        raise NotImplementedError

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        raise NotImplementedError

    def server_arguments(self) -> list[str]:
        """Arguments of this kind of server beyond the common ones."""
        return []

    # -- shared ---------------------------------------------------------------------
    def start(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)
        bundle, bundle_mounts = self.bundle, dict[Path, str]()
        if self.docker is not None:  # the user's folders, where the container sees them
            bundle, bundle_mounts = container_view(self.bundle)
        command = python_module_command(
            self.server_module, "--bundle", bundle, "--host", self.host,
            "--port", str(self.port), "--cpus", format_cpus(self.cpus),
            "--workers", str(self.workers), "--threads", str(self.threads),
            "--max-body-bytes", str(self.limits.max_body_bytes),
            "--max-batch", str(self.limits.max_batch), *self.server_arguments(),
        )
        if self.docker is not None:
            mounts = [self.log_path.parent] if self.log_path is not None else []
            # The kind's image (deploybench-flask), whatever this result is named
            # (flask-binary with --encodings).
            self._server = ContainerProcess(self.docker, type(self).name, command,
                                            self.cpus, self.log_path, mounts,
                                            self.container_memory_mb(),
                                            read_only=bundle_mounts)
        else:
            self._server = ServerProcess(command, log_path=self.log_path)
        self._connect()
        self._server.launch()
        # Launch to first good answer: the cold start of this deployment.
        self.startup_s = self._server.wait_ready(self.health, START_TIMEOUT_S,
                                                 f"{self.name} server")

    def health(self) -> bool:
        """Healthy, and answered by one of *our* server's processes (the port was free
        when chosen, but another program could have taken it since)."""
        if self._server is None:
            return False
        pid = self._serving_pid()
        return pid is not None and self._server.owns(pid)

    def cold_start(self, example: np.ndarray) -> dict[str, Any]:
        """Restart the server and time it from launch to its first good answer."""
        import time

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
        import time

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
        container = self._server.describe() if isinstance(self._server, ContainerProcess) \
            else {}
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
            "pid": self.server_pid,
            **container,
        }

    def container_memory_mb(self) -> int | None:
        """This target's default container memory limit (None: 2 GB per target CPU)."""
        return None

    def final_facts(self) -> dict[str, Any]:
        """Figures read once the load is over (a container's memory, as Docker counts it)."""
        if isinstance(self._server, ContainerProcess):
            return self._server.read_stats()
        return {}

    def stop(self) -> None:
        self._disconnect()
        if self._server is not None:
            self._server.stop()
            self._server = None
