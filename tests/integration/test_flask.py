"""The real Flask target: gunicorn started as a process, spoken to over loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

from harness.cpus import CpuPlan
from harness.parity import check_parity
from targets import codec
from targets.bundle import serve_batch
from targets.flask.target import FlaskTarget

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def flask(cpus: CpuPlan, digits) -> Iterator[FlaskTarget]:  # type: ignore[no-untyped-def]
    with FlaskTarget("digits", list(cpus.target), "json",
                     limits=codec.Limits(max_body_bytes=1 << 20, max_batch=16)) as target:
        yield target


def test_health_and_startup_is_measured(flask: FlaskTarget) -> None:
    assert flask.health()
    assert flask.startup_s is not None
    assert flask.startup_s > 0
    described = flask.describe()
    assert described["workers"] == len(flask.cpus)
    assert described["url"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("encoding", codec.ENCODINGS)
def test_parity_with_in_process(flask: FlaskTarget, digits, encoding: str) -> None:  # type: ignore[no-untyped-def]
    examples = digits.example_requests()
    reference = [serve_batch(digits, e) for e in examples]
    flask.encoding = encoding
    try:
        result = check_parity(flask, examples, reference)
    finally:
        flask.encoding = "json"
    assert result["ok"]
    assert result["examples"] == 64
    assert result["max_abs_diff"] <= 1e-5


def test_batch_request(flask: FlaskTarget, digits) -> None:  # type: ignore[no-untyped-def]
    batch = np.concatenate(digits.example_requests()[:8])
    preds = flask.predict(batch)
    assert [p.label for p in preds] == [p.label for p in serve_batch(digits, batch)]


def _pid(flask: FlaskTarget) -> int:
    assert flask._client is not None
    status, body = flask._client.request("GET", "/healthz")
    assert status == 200
    pid: int = json.loads(body)["pid"]
    return pid


GOOD = codec.encode_request(np.zeros((1, 64), dtype=np.float32), "json")
BAD: list[tuple[str, bytes, dict[str, str], int]] = [
    ("invalid json", b"{nope", {"Content-Type": "application/json"}, 400),
    ("wrong shape", b'{"inputs": [[1, 2, 3]]}', {"Content-Type": "application/json"}, 400),
    ("strings", b'{"inputs": [["a"]]}', {"Content-Type": "application/json"}, 400),
    ("NaN", json.dumps({"inputs": [[float("nan")] * 64]}).encode(),
     {"Content-Type": "application/json"}, 400),
    ("empty body", b"", {"Content-Type": "application/json"}, 400),
    ("wrong content type", b"inputs=1", {"Content-Type": "text/plain"}, 415),
    ("no content type", b"{}", {}, 415),
    ("truncated binary", b"\0" * 100, {"Content-Type": "application/octet-stream",
                                       "X-Shape": "1,64"}, 400),
    ("binary without shape", b"\0" * 256, {"Content-Type": "application/octet-stream"}, 400),
    ("batch over limit", json.dumps({"inputs": [[0.0] * 64] * 17}).encode(),
     {"Content-Type": "application/json"}, 413),
    ("body over limit", b"0" * (2 << 20), {"Content-Type": "application/json"}, 413),
    ("deeply nested", b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
     {"Content-Type": "application/json"}, 400),
    ("bool among numbers", json.dumps({"inputs": [[1.0] * 63 + [True]]}).encode(),
     {"Content-Type": "application/json"}, 400),
    ("unicode junk", "{\"inputs\": [[\"\u2603\u0000\"]]}".encode(),
     {"Content-Type": "application/json"}, 400),
]


@pytest.mark.parametrize(("why", "body", "headers", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_json_client_error_and_server_lives(
        flask: FlaskTarget, why: str, body: bytes, headers: dict[str, str], status: int) -> None:
    pid = _pid(flask)
    got, answer = flask.request(body, headers)
    assert got == status, answer
    doc = json.loads(answer)
    assert doc["status"] == status
    assert doc["error"]
    # Still serving, by the same worker: nothing crashed or restarted.
    ok, _ = flask.request(*GOOD)
    assert ok == 200
    assert _pid(flask) == pid


def test_unknown_path_and_method_are_json(flask: FlaskTarget) -> None:
    assert flask._client is not None
    status, body = flask._client.request("GET", "/nope")
    assert status == 404
    assert json.loads(body)["status"] == 404
    status, body = flask._client.request("GET", "/predict")
    assert status == 405
    assert json.loads(body)["status"] == 405


def test_stop_leaves_no_process(cpus: CpuPlan, digits) -> None:  # type: ignore[no-untyped-def]
    target = FlaskTarget("digits", list(cpus.target), "json")
    with target:
        assert target._server is not None
        tree = target._server.tree()
        assert len(tree) >= 2  # gunicorn master and at least one worker
        pids = [p.pid for p in tree]
        # Every process is pinned to the target CPUs.
        assert all(sorted(p.cpu_affinity()) == sorted(cpus.target) for p in tree)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in pids)


def test_serve_command_runs_the_target_standalone(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                                  tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys

    from targets.cpuset import format_cpus
    from targets.httpclient import HttpClient
    from targets.process import ServerProcess, free_port

    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "harness", "serve", "flask", "--bundle", "digits",
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
        server.wait_ready(healthy, 120, "deploybench serve flask")
        status, body = client.request("POST", "/predict", *GOOD)
        assert status == 200
        assert body.startswith(codec.RESPONSE_PREFIX)
    finally:
        client.close()
        server.stop()
    assert "bind=127.0.0.1" in (tmp_path / "serve.log").read_text()
