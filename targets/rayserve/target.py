"""The Ray Serve target as the orchestrator sees it: a server process running a local Ray
cluster (a local process only: no container image), spoken to through the HTTP prediction
API, like the Flask target."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from targets.batching import BatchingSpec
from targets.rayserve.server import DEFAULT_THREADS
from targets.served import HttpServedTarget


@dataclass(frozen=True)
class RayServeOptions:
    """``run --rayserve-workers/--rayserve-threads`` (None: the default)."""

    #: Serve replicas (default: one per target CPU).
    workers: int | None = None
    #: Requests a replica takes at once (Serve's max_ongoing_requests).
    threads: int | None = None


class RayServeTarget(HttpServedTarget):
    name = "rayserve"
    server_module = "targets.rayserve.server"
    default_threads = DEFAULT_THREADS
    server_kind = "Ray Serve (HTTP proxy + replicas)"

    def __init__(self, *args: Any, batching: BatchingSpec | None = None,
                 batch_log_dir: Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``@serve.batch`` in every replica; None: each request is its own forward pass.
        self.batching = batching
        self.batch_log_dir = batch_log_dir

    def server_arguments(self) -> list[str]:
        arguments = []
        if self.batching is not None:
            arguments += ["--batching", str(self.batching)]
            if self.batch_log_dir is not None:
                arguments += ["--batch-log-dir", str(self.batch_log_dir)]
        return arguments

    def describe(self) -> dict[str, Any]:
        try:  # the run's metadata lists the core packages' versions; Ray is an extra
            ray_version: str | None = metadata.version("ray")
        except metadata.PackageNotFoundError:
            ray_version = None
        return {**super().describe(), "ray_version": ray_version,
                "batching": str(self.batching) if self.batching is not None else None}
