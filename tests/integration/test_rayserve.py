"""The real Ray Serve target: a local Ray cluster started by its server process, spoken
to over loopback through Serve's HTTP proxy, with ``@serve.batch`` on.

One cluster for the module (each start costs ~10 s): the stop test comes last and stops it.
Malformed requests: the shared corpus, tests/integration/test_bad_input.py (unbatched).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.cpus import CpuPlan
from harness.parity import check_parity
from reports.schema import RunDoc, load_run
from targets.batching import BatchingSpec, read_batch_log
from targets.bundles.protocol import serve_batch
from targets.rayserve.target import RayServeTarget
from targets.wire import codec
from targets.wire.httpclient import HttpClient
from tests.integration.processes import alive, descendants
from tests.unit.test_run_types import problems

pytestmark = pytest.mark.integration

BATCHING = BatchingSpec(max_batch=8, max_wait_ms=5)


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batches")


@pytest.fixture(scope="module")
def rayserve(cpus: CpuPlan, digits, batch_dir: Path  # type: ignore[no-untyped-def]
             ) -> Iterator[RayServeTarget]:
    with RayServeTarget("digits", list(cpus.target), "json", workers=1,
                        limits=codec.Limits(max_body_bytes=1 << 20, max_batch=16),
                        log_path=batch_dir / "rayserve.log", batching=BATCHING) as target:
        yield target


def test_health_answers_from_a_replica_inside_the_server_s_tree(
        rayserve: RayServeTarget) -> None:
    assert rayserve.health()  # the answering pid is one of the server's descendants
    assert rayserve.startup_s is not None
    assert rayserve.startup_s > 0
    described = rayserve.describe()
    assert described["workers"] == 1
    assert described["batching"] == "max_batch=8,max_wait_ms=5"
    assert described["ray_version"] == "2.60.0"
    assert rayserve.server_pid is not None
    names = {p.name() for p in descendants(rayserve.server_pid)}
    # ray.init() started the cluster inside the server: its GCS and raylet are children.
    assert {"gcs_server", "raylet"} <= names, names


@pytest.mark.parametrize("encoding", codec.ENCODINGS)
def test_parity_with_in_process(rayserve: RayServeTarget, digits,  # type: ignore[no-untyped-def]
                                encoding: str) -> None:
    examples = digits.example_requests()
    reference = [serve_batch(digits, e) for e in examples]
    rayserve.encoding = encoding
    try:
        result = check_parity(rayserve, examples, reference)
    finally:
        rayserve.encoding = "json"
    assert result["ok"]
    assert result["examples"] == 64
    assert result["max_abs_diff"] <= 1e-5


def _post_all(address: str, bodies: list[tuple[bytes, dict[str, str]]]) -> list[bytes]:
    host, port = address.split(":")
    client = HttpClient(host, int(port), timeout_s=60)
    try:
        answers = []
        for body, headers in bodies:
            status, answer = client.request("POST", "/predict", body, headers)
            assert status == 200, answer[:300]
            answers.append(answer)
        return answers
    finally:
        client.close()


def test_concurrent_requests_share_forward_passes(
        rayserve: RayServeTarget, digits, batch_dir: Path) -> None:  # type: ignore[no-untyped-def]
    examples = digits.example_requests()[:32]
    bodies = [codec.encode_request(e, "json") for e in examples]
    per_client = [bodies[i::8] for i in range(8)]  # 8 clients at once, 4 requests each
    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(lambda b: _post_all(rayserve.address, b), per_client))
    for i, answers in enumerate(answered):  # every request got its own predictions
        for j, answer in enumerate(answers):
            expected = serve_batch(digits, examples[i + 8 * j])
            assert [p.label for p in codec.decode_predictions(answer)] \
                == [p.label for p in expected]
    time.sleep(0.6)  # a batch log is flushed at a forward pass 0.5 s after the last flush
    rayserve.predict(examples[0])
    log = read_batch_log(rayserve.batch_log_dir)
    during = log[log[:, 0] >= started]
    assert during[:, 1].sum() >= 32  # every request went through the batcher
    assert during[:, 2].max() <= BATCHING.max_batch
    assert during[:, 1].max() > 1, during  # some forward passes served several requests


def test_a_request_over_max_batch_is_served_alone(
        rayserve: RayServeTarget, digits) -> None:  # type: ignore[no-untyped-def]
    batch = np.concatenate(digits.example_requests()[:12])  # 12 > max_batch, <= the limit
    preds = rayserve.predict(batch)
    assert [p.label for p in preds] == [p.label for p in serve_batch(digits, batch)]


def test_unknown_path_and_method_are_json(rayserve: RayServeTarget) -> None:
    host, port = rayserve.address.split(":")
    client = HttpClient(host, int(port))
    try:
        status, body = client.request("GET", "/nope")
        assert status == 404
        assert json.loads(body)["status"] == 404
        status, body, headers = client.request_full("GET", "/predict")
        assert status == 405
        assert json.loads(body)["status"] == 405
        assert headers.get("allow") == "POST"
    finally:
        client.close()


def _run(out: Path, *extra: str, name: str = "rayserve") -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "rayserve", "--bundle", "digits",
         "--scenario", "smoke", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert run["status"] == "complete"
    # As written, every block of its type (rayserve's description keys included).
    assert problems(json.loads((out / "run.json").read_text()), RunDoc) == []
    [target] = run["targets"]
    assert target["name"] == name
    assert target["status"] == "ok", target["error"]
    assert target["parity"] is not None
    assert target["parity"]["ok"]
    for stage in target["stages"]:
        assert stage["errors"] == 0
        assert stage["rps"] > 0
    return dict(target["describe"])


def test_run_measures_rayserve_when_named(tmp_path: Path) -> None:
    described = _run(tmp_path / "run", "--rayserve-workers", "1")
    assert described["workers"] == 1
    assert described["server"] == "Ray Serve (HTTP proxy + replicas)"
    startup_s = described["startup_s"]
    assert isinstance(startup_s, float)
    assert startup_s > 0


def test_run_measures_rayserve_batched(tmp_path: Path) -> None:
    out = tmp_path / "run"
    described = _run(out, "--rayserve-workers", "1", "--batching", "max_batch=8,max_wait_ms=5",
                     name="rayserve+batch")
    assert described["batching"] == "max_batch=8,max_wait_ms=5"
    # @serve.batch's forward passes, counted in the stages from the replica's batch log.
    [target] = load_run(out)["targets"]
    formed = [stage["batching"] for stage in target["stages"]]
    assert all(block is not None and block["batches"] > 0 for block in formed)


def test_stop_leaves_no_ray_process(rayserve: RayServeTarget) -> None:
    assert rayserve.server_pid is not None
    server = psutil.Process(rayserve.server_pid)
    tree = [server, *descendants(rayserve.server_pid)]
    assert len(tree) >= 6  # the server, GCS, raylet, Serve's controller, proxy, a replica
    rayserve.stop()
    assert alive(tree) == []  # raylet and gcs_server included
    assert not rayserve.health()
