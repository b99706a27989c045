"""One short open-loop stage (Poisson arrivals at a low rate) through each kind of load
generator user against a real target: gRPC, the Lambda target's Function URL (HTTP) and
in-process. The null HTTP server's open-loop stages are in test_trust.py."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.launch import LoadResult
from targets.awslambda.target import LambdaTarget
from targets.bundles.resolve import get_bundle
from targets.grpc.target import GrpcTarget
from targets.inprocess.target import InProcessTarget
from targets.wire import codec
from targets.wire.httpclient import HttpClient
from tests.integration.stages import drive, one_window

pytestmark = pytest.mark.integration

RATE = 50.0
WINDOW_S = 2.0
#: 50 requests/s for 2 s after a 0.5 s warm-up. The null bundle: no model, so the stage
#: measures the user and the target's serving path, and Lambda's cold starts are short.
STAGE = one_window(concurrency=(), rate=(RATE,), window_s=WINDOW_S)
BUNDLE = "null"
#: Lambda environments warmed before an open-loop stage (see its test).
WARM = 4


def examples() -> list[np.ndarray]:
    return get_bundle(BUNDLE).example_requests()


def check_open_stage(result: LoadResult) -> None:
    assert result.error is None
    [raw] = result.stages
    stage = summarize_stage(raw)
    assert stage["mode"] == "open"
    assert stage["errors"] == 0, stage["error_kinds"]
    assert stage["unanswered"] == 0
    # Poisson arrivals: 100 expected in the window, sd 10.
    assert 50 <= stage["requests"] <= 160, stage["requests"]
    open_loop = stage["open_loop"]
    assert open_loop["rate"] == RATE
    assert open_loop["arrival"] == "poisson"
    assert open_loop["unsent"] == 0
    assert open_loop["queued"] == 0  # 50 req/s never fills 256 slots
    # Every request's send delay is recorded (not the closed loop's zeros): how long after
    # its intended time it went out, never before.
    delays = raw.send_delay_ms
    assert len(delays) == len(raw.ok) == len(raw.start_s) > 0
    assert (delays >= 0).all()
    assert (delays > 0).any()
    assert open_loop["send_delay_ms"] is not None
    # Each request is filed under its intended send time, the seeded schedule itself
    # (the first open stage of trial 0: seed 0), and its latency counts from there.
    rng = random.Random(STAGE.seed)
    gaps = [rng.expovariate(RATE) for _ in range(len(raw.start_s))]
    np.testing.assert_allclose(np.diff(np.sort(raw.start_s)), gaps[1:], atol=1e-5)
    assert (raw.latency_ms >= delays).all()
    latency, service = stage["latency_ms"], open_loop["service_latency_ms"]
    assert latency is not None
    assert service is not None
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert 0 < service["p50"] <= latency["p50"]


def test_open_loop_over_grpc(cpus: CpuPlan, tmp_path: Path) -> None:
    with GrpcTarget(BUNDLE, list(cpus.target), "grpc") as target:
        result = drive("grpc", target.load_spec(examples()), list(cpus.loadgen), tmp_path,
                       STAGE)
    check_open_stage(result)


def test_open_loop_through_the_lambda_function_url(cpus: CpuPlan, tmp_path: Path) -> None:
    with LambdaTarget(BUNDLE, list(cpus.target), "json") as target:
        # Warm environments before the schedule starts, a few at once: an arrival that
        # finds every environment busy starts a new one (a cold start of a second on a
        # slow machine, during which more arrive and start more, up to the limit of 10,
        # then throttled), which is Lambda working as configured, not this test's point.
        clients = [HttpClient("127.0.0.1", int(target.port or 0)) for _ in range(WARM)]
        body, headers = codec.encode_request(examples()[0], "json")
        with ThreadPoolExecutor(WARM) as pool:
            list(pool.map(lambda c: c.request("POST", "/predict", body, headers), clients))
        for client in clients:
            client.close()
        result = drive("lambda", target.load_spec(examples()), list(cpus.loadgen),
                       tmp_path, STAGE)
    check_open_stage(result)


def test_open_loop_in_process(cpus: CpuPlan, tmp_path: Path) -> None:
    with InProcessTarget(BUNDLE, list(cpus.target)) as target:
        result = drive("inprocess", target.load_spec(examples()), list(cpus.loadgen),
                       tmp_path, STAGE)
    check_open_stage(result)
