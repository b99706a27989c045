"""docker-compose.yml's plain Locust load (docker/locustfile.py), for each served target.

The compose file runs it in containers against fixed ports; here the same file runs in a
plain headless Locust process against each real target on a free port (Locust's --host
overrides the file's default), so a broken user fails here, not in a user's hands.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.cpus import CpuPlan
from targets.awslambda.target import LambdaTarget
from targets.fastapi.target import FastapiTarget
from targets.flask.target import FlaskTarget
from targets.grpc.target import GrpcTarget

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "docker" / "locustfile.py"
TARGETS: dict[str, Any] = {"flask": FlaskTarget, "fastapi": FastapiTarget, "grpc": GrpcTarget,
                           "lambda": LambdaTarget}


@pytest.fixture(params=sorted(TARGETS))
def served(request: pytest.FixtureRequest, cpus: CpuPlan,
           digits: Any) -> Iterator[tuple[str, str]]:
    name = request.param
    with TARGETS[name]("digits", list(cpus.target), "json") as target:
        if name == "lambda":  # both users' environments warm: no cold start in 5 s of load
            body = json.dumps({"inputs": digits.example_requests()[0].tolist()})
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda _: _post(target.port, body), range(2)))
        host = f"127.0.0.1:{target.port}" if name == "grpc" else \
            f"http://127.0.0.1:{target.port}"
        yield name, host


def _post(port: int, body: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/predict", body=body,
                           headers={"Content-Type": "application/json"})
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_the_compose_locustfile_drives_each_target(served: tuple[str, str], cpus: CpuPlan,
                                                   tmp_path: Path) -> None:
    name, host = served
    env = {**os.environ, "DEPLOYBENCH_TARGET": name}
    done = subprocess.run(
        ["taskset", "-c", ",".join(map(str, cpus.loadgen)),
         sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
         "-u", "2", "-r", "2", "-t", "5s", "--stop-timeout", "5", "--only-summary",
         "--csv", str(tmp_path / "stats"), "--exit-code-on-error", "1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "stats_stats.csv") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    predict = rows.get("Predict" if name == "grpc" else "/predict")
    assert predict is not None, (rows, done.stderr[-3000:])
    assert int(predict["Request Count"]) >= 20
    assert int(predict["Failure Count"]) == 0
    expected = "grpc" if name == "grpc" else "POST"
    assert predict["Type"] == expected


def test_an_unknown_target_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "DEPLOYBENCH_TARGET": "tomcat"}
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-t", "1s"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO, check=False)
    assert done.returncode != 0
    assert "DEPLOYBENCH_TARGET='tomcat'" in done.stderr
