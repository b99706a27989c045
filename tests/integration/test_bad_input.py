"""The shared corpus of malformed requests (tests/corpus.py) against every served target:
flask, fastapi, grpc, rayserve (through Serve's HTTP proxy), and the Lambda emulator's
Invoke API and Function URL.

Every case must get the protocol's client error (a 4xx with a JSON message, a gRPC status
with details, a Lambda function error or the Invoke API's own 4xx), and afterwards the
same server process must still answer a good request: nothing crashed or restarted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from harness.cpus import CpuPlan
from targets.awslambda.target import LambdaTarget
from targets.fastapi.target import FastapiTarget
from targets.flask.target import FlaskTarget
from targets.grpc.client import PREDICT_METHOD
from targets.grpc.target import GrpcTarget
from targets.rayserve.target import RayServeTarget
from targets.wire import codec
from targets.wire.httpclient import HttpClient
from tests.corpus import CORPUS, LIMITS, Case, cases

pytestmark = pytest.mark.integration

GOOD = np.zeros((1, 64), dtype=np.float32)
INVOKE_PATH = "/2015-03-31/functions/deploybench/invocations"
#: The issue's floor: at least this many malformed requests per way in.
MINIMUM = 20


def test_the_corpus_is_big_enough_for_every_way_in() -> None:
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    for way in ("http", "invoke", "grpc"):
        assert len(cases(way)) >= MINIMUM, way


@pytest.fixture(scope="module")
def flask(cpus: CpuPlan, digits) -> Iterator[FlaskTarget]:  # type: ignore[no-untyped-def]
    with FlaskTarget("digits", list(cpus.target), "json", limits=LIMITS) as target:
        yield target


@pytest.fixture(scope="module")
def rayserve(cpus: CpuPlan, digits) -> Iterator[RayServeTarget]:  # type: ignore[no-untyped-def]
    # One replica: every case is answered by the same process, whose pid must not change.
    with RayServeTarget("digits", list(cpus.target), "json", workers=1,
                        limits=LIMITS) as target:
        yield target


@pytest.fixture(scope="module")
def fastapi(cpus: CpuPlan, digits) -> Iterator[FastapiTarget]:  # type: ignore[no-untyped-def]
    with FastapiTarget("digits", list(cpus.target), "json", limits=LIMITS) as target:
        yield target


@pytest.fixture(scope="module")
def grpc_server(cpus: CpuPlan, digits) -> Iterator[GrpcTarget]:  # type: ignore[no-untyped-def]
    with GrpcTarget("digits", list(cpus.target), "json", limits=LIMITS) as target:
        yield target


@pytest.fixture(scope="module")
def function(cpus: CpuPlan, digits) -> Iterator[LambdaTarget]:  # type: ignore[no-untyped-def]
    with LambdaTarget("digits", list(cpus.target), "json", concurrency=2,
                      limits=LIMITS) as target:
        yield target


def _pid(client: HttpClient, path: str) -> int:
    status, body = client.request("GET", path)
    assert status == 200, body
    pid: int = json.loads(body)["pid"]
    return pid


@contextlib.contextmanager
def _client(target: Any) -> Iterator[HttpClient]:
    host, port = target.address.split(":")
    client = HttpClient(host, int(port), timeout_s=60)
    try:
        yield client
    finally:
        client.close()


def _http_case(client: HttpClient, case: Case, health: str, prefix: str = "") -> None:
    assert case.http is not None
    pid = _pid(client, health)
    status, answer = client.request("POST", f"{prefix}/predict", case.http.body,
                                    case.http.headers)
    assert status == case.http.status, answer[:300]
    doc = json.loads(answer)
    assert doc["status"] == status
    assert doc["error"]  # says what is wrong
    good, answer = client.request("POST", f"{prefix}/predict",
                                  *codec.encode_request(GOOD, "json"))
    assert good == 200, answer[:300]
    assert _pid(client, health) == pid  # the same process: nothing crashed or restarted


@pytest.mark.parametrize("case", cases("http"), ids=lambda c: c.name)
def test_flask(flask: FlaskTarget, case: Case) -> None:
    with _client(flask) as client:
        _http_case(client, case, "/healthz")


@pytest.mark.parametrize("case", cases("http"), ids=lambda c: c.name)
def test_rayserve(rayserve: RayServeTarget, case: Case) -> None:
    with _client(rayserve) as client:
        _http_case(client, case, "/healthz")


@pytest.mark.parametrize("case", cases("http"), ids=lambda c: c.name)
def test_fastapi(fastapi: FastapiTarget, case: Case) -> None:
    with _client(fastapi) as client:
        _http_case(client, case, "/healthz")


@pytest.mark.parametrize("case", cases("http"), ids=lambda c: c.name)
def test_lambda_function_url(function: LambdaTarget, case: Case) -> None:
    with _client(function) as client:
        _http_case(client, case, "/_deploybench/health")


@pytest.mark.parametrize("case", cases("invoke"), ids=lambda c: c.name)
def test_lambda_invoke_api(function: LambdaTarget, case: Case) -> None:
    assert case.invoke is not None
    with _client(function) as client:
        pid = _pid(client, "/_deploybench/health")
        status, answer, headers = client.request_full("POST", INVOKE_PATH, case.invoke.payload)
        assert status == case.invoke.status, answer[:300]
        doc = json.loads(answer)
        if status == 200:  # the handler refused it: a function error, as Lambda reports one
            assert headers.get("x-amz-function-error") == "Unhandled"
            assert doc["errorType"] == case.invoke.error
            assert doc["errorMessage"]
        else:  # the Invoke API refused it before any function ran, as AWS's does
            assert headers.get("x-amzn-errortype") == case.invoke.error, headers
            assert doc["message"]
        good = json.dumps({"inputs": GOOD.tolist()}).encode()
        status, answer, headers = client.request_full("POST", INVOKE_PATH, good)
        assert status == 200
        assert "x-amz-function-error" not in headers, answer[:300]
        assert json.loads(answer)["predictions"]
        assert _pid(client, "/_deploybench/health") == pid


@pytest.mark.parametrize("case", cases("grpc"), ids=lambda c: c.name)
def test_grpc(grpc_server: GrpcTarget, case: Case) -> None:
    assert case.grpc is not None
    pid = grpc_server.client.server_pid()
    with grpc.insecure_channel(grpc_server.address) as channel:
        call: Any = channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as info:
            call(case.grpc.message, timeout=30)
    assert info.value.code().name == case.grpc.code, info.value.details()
    assert info.value.details()  # says what is wrong
    assert len(grpc_server.predict(GOOD)) == 1
    assert grpc_server.client.server_pid() == pid
