"""The real Flask target: gunicorn started as a process, spoken to over loopback."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

from harness.cpus import CpuPlan
from harness.parity import check_parity
from targets.bundles.protocol import serve_batch
from targets.flask.target import FlaskTarget
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import ServerProcess, free_port
from targets.wire import codec
from targets.wire.httpclient import HttpClient

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


GOOD = codec.encode_request(np.zeros((1, 64), dtype=np.float32), "json")
# Malformed requests: the shared corpus, tests/integration/test_bad_input.py.


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
