"""Starting and stopping a served target as a local process, always by its own PID."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from targets.errors import TargetStartError

#: How long a server gets to exit after SIGTERM before it is killed (gunicorn's own
#: graceful timeout is 30 s; ours serves nothing by then, so 10 s is plenty).
STOP_GRACE_S = 10.0
POLL_S = 0.02
#: Set in the environment of every process deploybench starts: the starter's PID.
PARENT_ENV = "DEPLOYBENCH_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process we start: ours, plus who started it."""
    return {**os.environ, **(extra or {}), PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """In a process deploybench started: have Linux send SIGTERM when the starter dies.

    Called first thing by the servers and the load generator, so that an orchestrator
    killed without a chance to clean up (SIGKILL, a crash) leaves nothing running.
    Does nothing when the process was started some other way (a user's shell, a container).
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    os.environ.pop(PARENT_ENV)  # not inherited further: gunicorn workers follow their master
    signal_when_parent_dies()
    if os.getppid() != int(parent):  # the starter died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def signal_when_parent_dies() -> None:
    """Have Linux send this process SIGTERM when its parent dies (a forked server worker:
    the setting is not inherited across fork)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def python_module_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class ServerProcess:
    """One server process (and its children) started in its own session.

    ``stop()`` signals the process by PID, waits, then kills any survivor of the
    process tree it recorded, each by PID; it never looks processes up by name.
    """

    def __init__(self, command: Sequence[str], log_path: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.launched_at: float | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def launch(self) -> None:
        log = subprocess.DEVNULL if self.log_path is None else self.log_path.open("ab")
        try:
            self.launched_at = time.perf_counter()
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=child_env(self.env), start_new_session=True,
            )
        finally:
            if not isinstance(log, int):
                log.close()

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll ``ready`` until it is true; return seconds since launch.

        Raises :class:`TargetStartError` with the log's tail if the process exits or the
        timeout passes first.
        """
        assert self.proc is not None, "not started"
        assert self.launched_at is not None
        deadline = self.launched_at + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise TargetStartError(
                    f"{what} exited with code {self.proc.returncode} before it was healthy"
                    f" (log: {self.log_path}).\n{log_tail(self.log_path)}"
                )
            if ready():
                return time.perf_counter() - self.launched_at
            if time.perf_counter() > deadline:
                raise TargetStartError(
                    f"{what} was not healthy after {timeout_s:.0f} s (log: {self.log_path}).\n"
                    f"{log_tail(self.log_path)}"
                )
            time.sleep(POLL_S)

    def tree(self) -> list[psutil.Process]:
        """The process and its live descendants."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def owns(self, pid: int) -> bool:
        """``pid`` (as a health check reports it) is one of this server's processes."""
        return pid in {p.pid for p in self.tree()}

    def exit_note(self) -> str | None:
        """How the process ended ("PID 12 was killed by SIGKILL"), or None if it runs."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"PID {self.proc.pid} was killed by {signal.Signals(-code).name}"
        return f"PID {self.proc.pid} exited with code {code}"

    def describe(self) -> dict[str, Any]:
        return {}

    def read_stats(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        if self.proc is None:
            return
        members = self.tree()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(STOP_GRACE_S)
        # Children the server did not reap (it was killed, or a worker hung).
        for member in members[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        psutil.wait_procs(members[1:], timeout=STOP_GRACE_S)
        self.proc = None


class ProcessRuntime:
    """Servers run as local processes (the default; ``--runtime process``)."""

    kind = "process"

    def server(self, deployment: str, module: str, arguments: Sequence[str], *, bundle: str,
               cpus: list[int], log_path: Path | None, memory_mb: int | None
               ) -> ServerProcess:
        return ServerProcess(python_module_command(module, "--bundle", bundle, *arguments),
                             log_path=log_path)


#: The runtime a served target gets unless given another.
LOCAL = ProcessRuntime()
