"""The real gRPC target: a grpc.server process, spoken to over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from harness.parity import check_parity
from targets.bundles.protocol import serve_batch
from targets.grpc import predict_pb2
from targets.grpc.client import GrpcClient
from targets.grpc.server import APIS
from targets.grpc.target import GrpcTarget
from targets.wire import codec
from tests.integration.stages import assert_two_workers_serve_and_stop, drive

pytestmark = pytest.mark.integration

LIMITS = codec.Limits(max_body_bytes=1 << 16, max_batch=16)


@pytest.fixture(scope="module", params=APIS)
def server(request: pytest.FixtureRequest, cpus: CpuPlan, digits) -> Iterator[GrpcTarget]:  # type: ignore[no-untyped-def]
    """Each of gRPC's Python APIs the server can run (every test below runs on both)."""
    with GrpcTarget("digits", list(cpus.target), "grpc", limits=LIMITS,
                    api=request.param) as target:
        yield target


def test_health_is_serving_for_the_server_and_the_service(server: GrpcTarget) -> None:
    assert server.client.health("") == "SERVING"
    assert server.client.health("deploybench.v1.Predictor") == "SERVING"
    assert server.client.health("no.such.Service") is None  # NOT_FOUND
    assert server.startup_s is not None
    assert server.startup_s > 0


def test_reflection_lists_the_service(server: GrpcTarget) -> None:
    database = ProtoReflectionDescriptorDatabase(server.client.channel)
    services = set(database.get_services())
    assert {"deploybench.v1.Predictor", "grpc.health.v1.Health"} <= services
    methods = database.FindFileContainingSymbol("deploybench.v1.Predictor").service[0].method
    assert {m.name for m in methods} == {"Predict", "Info"}


def test_parity_with_in_process(server: GrpcTarget, digits) -> None:  # type: ignore[no-untyped-def]
    examples = digits.example_requests()
    result = check_parity(server, examples, [serve_batch(digits, e) for e in examples])
    assert result["ok"]
    assert result["examples"] == 64


def _request(data: bytes, shape: list[int], dtype: int = predict_pb2.FLOAT32) -> object:
    return predict_pb2.PredictRequest(data=data, shape=shape, dtype=dtype)


GOOD = np.zeros((1, 64), dtype="<f4")
BAD = [
    ("bad shape", _request(GOOD.tobytes(), [1, 63]), "INVALID_ARGUMENT", "shape"),
    ("no batch dimension", _request(GOOD.tobytes(), [64]), "INVALID_ARGUMENT", "shape"),
    ("wrong dtype", _request(GOOD.tobytes(), [1, 64], predict_pb2.FLOAT64), "INVALID_ARGUMENT",
     "FLOAT64"),
    ("missing dtype", _request(GOOD.tobytes(), [1, 64], predict_pb2.DTYPE_UNSPECIFIED),
     "INVALID_ARGUMENT", "dtype"),
    ("wrong byte length", _request(GOOD.tobytes()[:-3], [1, 64]), "INVALID_ARGUMENT", "bytes"),
    ("empty request", predict_pb2.PredictRequest(), "INVALID_ARGUMENT", "dtype"),
    ("empty data", _request(b"", [1, 64]), "INVALID_ARGUMENT", "bytes"),
    ("negative dimension", _request(b"", [-1, 64]), "INVALID_ARGUMENT", "negative"),
    ("NaN", _request(np.full((1, 64), np.nan, dtype="<f4").tobytes(), [1, 64]),
     "INVALID_ARGUMENT", "NaN"),
    ("batch over limit", _request(np.zeros((17, 64), dtype="<f4").tobytes(), [17, 64]),
     "RESOURCE_EXHAUSTED", "limit"),
    ("message over limit", _request(b"\0" * (1 << 17), [512, 64]), "RESOURCE_EXHAUSTED",
     "larger than max"),
]


@pytest.mark.parametrize(("why", "request_", "code", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_the_right_code_and_server_lives(
        server: GrpcTarget, why: str, request_: object, code: str, says: str) -> None:
    pid = server.client.server_pid()
    with pytest.raises(grpc.RpcError) as info:
        server.client.call(request_)
    assert info.value.code().name == code
    assert says.lower() in info.value.details().lower()
    # Still serving, from the same process.
    assert len(server.predict(GOOD)) == 1
    assert server.client.server_pid() == pid


def test_locust_stage_has_no_errors(server: GrpcTarget, cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                    tmp_path: Path) -> None:
    result = drive("grpc", server.load_spec(digits.example_requests()), list(cpus.loadgen),
                   tmp_path)
    stage = summarize_stage(result.stages[0])
    assert stage["requests"] >= 300
    assert stage["errors"] == 0, stage["error_kinds"]
    lat = stage["latency_ms"]
    assert lat is not None
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert 0 < (stage["target_cpu_percent"] or 0) <= 105


def test_several_workers_share_the_port_and_all_stop(cpus: CpuPlan, digits) -> None:  # type: ignore[no-untyped-def]
    target = GrpcTarget("digits", list(cpus.target), "grpc", workers=2)

    def answering_pid() -> int:
        client = GrpcClient(target.address)  # a new channel: a new connection
        try:
            return client.server_pid()
        finally:
            client.close()

    assert_two_workers_serve_and_stop(target, answering_pid, connections=20)

