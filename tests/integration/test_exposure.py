"""Nothing deploybench starts is reachable from outside by accident: every server binds
loopback unless told otherwise (and warns when it is), and a port already taken is a
clear error at once, never a hang."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from harness.cpus import CpuPlan
from targets.awslambda.target import LambdaTarget
from targets.entrypoint import warn_if_exposed
from targets.flask.target import FlaskTarget
from targets.grpc.target import GrpcTarget

pytestmark = pytest.mark.integration
SERVED = ("flask", "grpc", "lambda")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("target", SERVED)
def test_a_taken_port_is_a_clear_error_at_once(target: str, taken_port: int, cpus: CpuPlan,
                                               digits) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness", "serve", target, "--port", str(taken_port),
         "--cpus", ",".join(str(c) for c in cpus.target)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert f"cannot bind 127.0.0.1:{taken_port}" in done.stderr, done.stderr[-2000:]
    assert "Choose another --port" in done.stderr
    assert time.monotonic() - started < 30  # no retrying for long


def _listening(pid: int) -> set[str]:
    """Addresses the process and its descendants listen on (TCP)."""
    root = psutil.Process(pid)
    out = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        out |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return out


@pytest.mark.parametrize("kind", SERVED)
def test_every_server_listens_on_loopback_only(kind: str, cpus: CpuPlan,
                                               digits) -> None:  # type: ignore[no-untyped-def]
    """What the harness starts, Lambda's environments and runtime API included."""
    classes = {"flask": FlaskTarget, "grpc": GrpcTarget, "lambda": LambdaTarget}
    with classes[kind]("digits", list(cpus.target), "json") as target:
        if kind == "lambda":
            target.predict(digits.example_requests()[0])  # an environment runs too
        addresses = _listening(target.server_pid)
    assert addresses
    assert all(_loopback(a) for a in addresses), addresses


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # gRPC's ::ffff:127.0.0.1
    return bool((mapped or ip).is_loopback)


@pytest.mark.parametrize(("host", "warns"), [
    ("127.0.0.1", False), ("::1", False), ("localhost", False),
    ("0.0.0.0", True), ("::", True), ("10.1.2.3", True),
])
def test_binding_beyond_loopback_warns(host: str, warns: bool,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    warn_if_exposed(host)
    assert ("reachable from other machines" in capsys.readouterr().err) is warns
