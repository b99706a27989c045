"""The real HTTP servers of the prediction API, each started as a process and spoken to
over loopback: the Flask target (gunicorn) and the FastAPI target (uvicorn), one contract."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

from harness.cpus import CpuPlan
from harness.parity import check_parity
from targets.bundles.protocol import serve_batch
from targets.fastapi.target import FastapiTarget
from targets.flask.target import FlaskTarget
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import ServerProcess, free_port
from targets.wire import codec
from targets.wire.httpclient import HttpClient

pytestmark = pytest.mark.integration

#: The fixture's body limit.
MAX_BODY = 1 << 20

#: The deployments serving the HTTP API, by name.
SERVERS: dict[str, type[FlaskTarget] | type[FastapiTarget]] = {
    "flask": FlaskTarget, "fastapi": FastapiTarget}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, cpus: CpuPlan,  # type: ignore[no-untyped-def]
           digits) -> Iterator[FlaskTarget | FastapiTarget]:
    with SERVERS[request.param]("digits", list(cpus.target), "json",
                                limits=codec.Limits(max_body_bytes=MAX_BODY,
                                                    max_batch=16)) as target:
        yield target


def test_health_and_startup_is_measured(server: FlaskTarget | FastapiTarget) -> None:
    assert server.health()
    assert server.startup_s is not None
    assert server.startup_s > 0
    described = server.describe()
    assert described["workers"] == len(server.cpus)
    assert described["url"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("encoding", codec.ENCODINGS)
def test_parity_with_in_process(server: FlaskTarget | FastapiTarget, digits, encoding: str) -> None:  # type: ignore[no-untyped-def]
    examples = digits.example_requests()
    reference = [serve_batch(digits, e) for e in examples]
    server.encoding = encoding
    try:
        result = check_parity(server, examples, reference)
    finally:
        server.encoding = "json"
    assert result["ok"]
    assert result["examples"] == 64
    assert result["max_abs_diff"] <= 1e-5


def test_batch_request(server: FlaskTarget | FastapiTarget, digits) -> None:  # type: ignore[no-untyped-def]
    batch = np.concatenate(digits.example_requests()[:8])
    preds = server.predict(batch)
    assert [p.label for p in preds] == [p.label for p in serve_batch(digits, batch)]


GOOD = codec.encode_request(np.zeros((1, 64), dtype=np.float32), "json")
# Malformed requests: the shared corpus, tests/integration/test_bad_input.py.


def test_unknown_path_and_method_are_json(server: FlaskTarget | FastapiTarget) -> None:
    assert server._client is not None
    status, body = server._client.request("GET", "/nope")
    assert status == 404
    assert json.loads(body)["status"] == 404
    status, body, headers = server._client.request_full("GET", "/predict")
    assert status == 405
    assert json.loads(body)["status"] == 405
    # RFC 9110: a 405 names the allowed methods (Flask adds the OPTIONS it answers itself).
    assert "POST" in headers.get("allow", "").replace(" ", "").split(",")


def _raw_post(address: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, object]]:
    """POST /predict over a socket of its own: (status, JSON answer)."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     + head + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.partition(b"\r\n\r\n")[2])


def test_a_declared_length_over_the_limit_is_refused_unread(
        server: FlaskTarget | FastapiTarget) -> None:
    # No body follows: an answer at all shows the server did not wait to read it.
    status, answer = _raw_post(server.address, f"Content-Length: {MAX_BODY + 1}\r\n".encode())
    assert (status, answer["status"]) == (413, 413)


def test_a_chunked_body_over_the_limit_is_refused(server: FlaskTarget | FastapiTarget) -> None:
    chunk = b" " * 65536
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (MAX_BODY // len(chunk) + 1)
    status, answer = _raw_post(server.address, b"Transfer-Encoding: chunked\r\n",
                               body + b"0\r\n\r\n")
    assert (status, answer["status"]) == (413, 413)
    assert server.health()  # and the server serves on


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_stop_leaves_no_process(cpus: CpuPlan, digits, kind: str) -> None:  # type: ignore[no-untyped-def]
    target = SERVERS[kind]("digits", list(cpus.target), "json")
    with target:
        assert target._server is not None
        tree = target._server.tree()
        assert len(tree) >= 2  # the master (gunicorn's, or the forking supervisor), a worker
        pids = [p.pid for p in tree]
        # Every process is pinned to the target CPUs.
        assert all(sorted(p.cpu_affinity()) == sorted(cpus.target) for p in tree)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in pids)


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_serve_command_runs_the_target_standalone(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                                  tmp_path, kind: str) -> None:

    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "harness", "serve", kind, "--bundle", "digits",
         "--port", str(port), "--cpus", format_cpus(cpus.target)],
        log_path=tmp_path / "serve.log",
    )
    client = HttpClient("127.0.0.1", port)

    def healthy() -> bool:
        try:
            return client.request("GET", "/healthz")[0] == 200
        except Exception:
            return False

    server.launch()
    try:
        server.wait_ready(healthy, 120, f"deploybench serve {kind}")
        status, body = client.request("POST", "/predict", *GOOD)
        assert status == 200
        assert body.startswith(codec.RESPONSE_PREFIX)
    finally:
        client.close()
        proc = server.proc
        server.stop()
    assert "bind=127.0.0.1" in (tmp_path / "serve.log").read_text()
    # A SIGTERM is a clean stop: exit 0 (uvicorn raises the signal again after its
    # graceful shutdown, which killed fastapi's workers with 241 until they handled it).
    assert proc is not None
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]
