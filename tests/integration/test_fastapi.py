"""What only the FastAPI target has: forked uvicorn workers on one listening socket, under
a supervisor that ends the server when any worker dies. (Its HTTP contract is tested with
Flask's: test_flask.py, test_bad_input.py, test_fuzz.py.)"""

from __future__ import annotations

import json
import time

import psutil
import pytest

from harness.cpus import CpuPlan
from targets.fastapi.target import FastapiTarget
from targets.wire import codec
from tests.integration.processes import alive

pytestmark = pytest.mark.integration


def _health_pid(target: FastapiTarget) -> int:
    assert target._client is not None
    # A connection of its own each time: the kernel hands it to whichever worker accepts.
    target._client.close()
    status, body = target._client.request("GET", "/healthz")
    assert status == 200
    pid: int = json.loads(body)["pid"]
    return pid


def test_two_workers_share_the_port_and_one_dying_ends_the_server(
        cpus: CpuPlan, digits) -> None:  # type: ignore[no-untyped-def]
    with FastapiTarget("digits", list(cpus.target), "json", workers=2) as target:
        assert target._server is not None
        supervisor = psutil.Process(target._server.pid)
        workers = supervisor.children()
        assert len(workers) == 2
        assert all(sorted(w.cpu_affinity()) == sorted(cpus.target) for w in workers)
        # Every answer comes from one of the two workers (the health check's PID is ours).
        seen = {_health_pid(target) for _ in range(20)}
        assert seen <= {w.pid for w in workers}
        assert target.predict(digits.example_requests()[0])
        workers[0].kill()
        # A half-sized server would measure something else: the supervisor stops the
        # other worker and exits, which the target reports.
        deadline = time.monotonic() + 15
        while target.exit_note() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert target.exit_note() is not None
        assert not alive(workers)


def test_the_description_is_the_hand_written_one_and_docs_are_off(
        cpus: CpuPlan, digits) -> None:  # type: ignore[no-untyped-def]
    with FastapiTarget("digits", list(cpus.target), "json") as target:
        assert target._client is not None
        status, body = target._client.request("GET", "/openapi.json")
        assert status == 200
        assert codec.BINARY_TYPE in json.loads(body)["paths"]["/predict"]["post"][
            "requestBody"]["content"]
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            status, body = target._client.request("GET", path)
            assert (status, json.loads(body)["status"]) == (404, 404), path
        assert target.describe()["threads_per_worker"] == 2
