"""Where a deployment's server runs, as the served targets see it: a :class:`Runtime`
starts the server's entry point and hands back a :class:`Server` to wait on, ask about
and stop. A local process (:class:`targets.runtimes.process.ProcessRuntime`) and a Docker
container (:class:`targets.runtimes.container.DockerRuntime`) are the two; a target is
given one rather than being a subclass per runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import psutil


class Server(Protocol):
    """One started server: a process tree, or a container's."""

    #: Truthy while it runs.
    proc: Any

    @property
    def pid(self) -> int: ...

    def launch(self) -> None: ...

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll ``ready`` until true; seconds since launch. Raises TargetStartError."""

    def tree(self) -> list[psutil.Process]: ...

    def owns(self, pid: int) -> bool:
        """``pid`` (as a health check reports it) is one of this server's processes."""

    def exit_note(self) -> str | None: ...

    def describe(self) -> dict[str, Any]:
        """What this runtime adds to the target's describe()."""

    def read_stats(self) -> dict[str, Any]:
        """Figures read once the load is over (a container's memory)."""

    def stop(self) -> None: ...


class Runtime(Protocol):
    """How a served target's server is run."""

    @property
    def kind(self) -> str:
        """run.json's ``metadata.runtime``: "process" or "docker"."""

    def server(self, deployment: str, module: str, arguments: Sequence[str], *, bundle: str,
               cpus: list[int], log_path: Path | None, memory_mb: int | None) -> Server:
        """A server for ``python -m MODULE --bundle BUNDLE ARGUMENTS`` (not launched yet).

        ``deployment`` names the container image; ``memory_mb`` is the deployment's own
        container memory limit (None: the runtime's default).
        """
