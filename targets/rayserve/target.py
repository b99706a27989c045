"""The Ray Serve target as the orchestrator sees it: a server process running a local Ray
cluster (a local process only: no container image), spoken to through the HTTP prediction
API, like the Flask target."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

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

    def describe(self) -> dict[str, Any]:
        try:  # the run's metadata lists the core packages' versions; Ray is an extra
            ray_version: str | None = metadata.version("ray")
        except metadata.PackageNotFoundError:
            ray_version = None
        return {**super().describe(), "ray_version": ray_version}
