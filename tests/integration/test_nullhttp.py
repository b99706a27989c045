"""The null HTTP target started for real, spoken to over loopback, and the null bundle
through the gRPC target: the calibration targets answer, and answer correctly."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from harness.parity import check_parity
from targets.bundles.null import ANSWER, NullBundle
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.errors import BundleError
from targets.grpc.client import GrpcClient
from targets.nullhttp.target import NullHttpTarget
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import ServerProcess, free_port
from targets.wire import codec
from tests.integration.stages import assert_two_workers_serve_and_stop, drive

pytestmark = pytest.mark.integration

LIMITS = codec.Limits(max_body_bytes=1 << 16, max_batch=16)
EXPECTED_BODY = codec.encode_predictions([ANSWER])


@pytest.fixture(scope="module")
def null() -> NullBundle:
    bundle = get_bundle("null")
    assert isinstance(bundle, NullBundle)
    bundle.load()
    return bundle


@pytest.fixture(scope="module")
def server(cpus: CpuPlan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NullHttpTarget]:
    log = tmp_path_factory.mktemp("nullhttp") / "server.log"
    with NullHttpTarget("null", list(cpus.target), "json", limits=LIMITS,
                        log_path=log) as target:
        yield target


# -- a raw HTTP/1.1 connection, to see exactly what goes over the wire -------------------
def _predict_request(body: bytes = b'{"inputs": [[0.0]]}', extra: bytes = b"") -> bytes:
    return (b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


HEALTH_REQUEST = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


class Wire:
    """One connection; reads responses framed by their Content-Length."""

    def __init__(self, target: NullHttpTarget) -> None:
        assert target.port is not None
        self.sock = socket.create_connection((target.host, target.port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed mid-response: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return self.buffer == b"" and not self._fill()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(server: NullHttpTarget) -> Iterator[Wire]:
    connection = Wire(server)
    yield connection
    connection.close()


def _assert_prediction(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 200
    assert headers["content-type"] == codec.JSON_TYPE
    assert body.startswith(codec.RESPONSE_PREFIX)
    assert codec.decode_predictions(body) == [ANSWER]


# -- the target -----------------------------------------------------------------------
def test_health_startup_and_description(server: NullHttpTarget, cpus: CpuPlan) -> None:
    assert server.health()
    assert server.startup_s is not None
    assert server.startup_s > 0
    described = server.describe()
    assert described["calibration"] is True
    assert described["url"] == server.url
    assert described["cpus"] == list(cpus.target)
    assert "no model" in described["server"]
    assert server._server is not None
    assert all(sorted(p.cpu_affinity()) == sorted(cpus.target) for p in server._server.tree())


@pytest.mark.parametrize("encoding", codec.ENCODINGS)
def test_parity_with_the_null_bundle(server: NullHttpTarget, null: NullBundle,
                                     encoding: str) -> None:
    examples = null.example_requests()
    server.encoding = encoding
    try:
        result = check_parity(server, examples, [serve_batch(null, e) for e in examples])
    finally:
        server.encoding = "json"
    assert result["ok"]
    assert result["max_abs_diff"] == 0.0


def test_a_batch_gets_one_prediction_per_row(server: NullHttpTarget, null: NullBundle) -> None:
    batch = np.concatenate(null.example_requests()[:3])
    assert server.predict(batch) == serve_batch(null, batch)


def test_load_spec_is_plain_http(server: NullHttpTarget, null: NullBundle) -> None:
    spec = server.load_spec(null.example_requests())
    assert spec["protocol"] == "http"
    assert spec["path"] == "/predict"
    assert len(spec["payloads"]) == len(null.example_requests())
    assert server._server is not None
    assert spec["watch_pids"] == [server._server.pid]


def test_other_bundles_are_refused(cpus: CpuPlan) -> None:
    with pytest.raises(BundleError, match="null"):
        NullHttpTarget("digits", list(cpus.target), "json")


def test_locust_stage_has_no_errors(server: NullHttpTarget, cpus: CpuPlan, null: NullBundle,
                                    tmp_path: Path) -> None:
    result = drive("null-http", server.load_spec(null.example_requests()), list(cpus.loadgen),
                   tmp_path)
    stage = summarize_stage(result.stages[0])
    assert stage["requests"] >= 300
    assert stage["errors"] == 0, stage["error_kinds"]


# -- the wire ---------------------------------------------------------------------------
def test_many_requests_on_one_keep_alive_connection(wire: Wire) -> None:
    for i in range(300):
        wire.send(_predict_request() if i % 3 else HEALTH_REQUEST)
        status, headers, body = wire.response()
        if i % 3:
            _assert_prediction(status, headers, body)
        else:
            assert status == 200
            assert json.loads(body)["bundle"] == "null"
        assert "connection" not in headers


def test_pipelined_requests_in_one_write_are_answered_in_order(wire: Wire) -> None:
    wire.send(_predict_request() + HEALTH_REQUEST + _predict_request(b"x" * 5000))
    _assert_prediction(*wire.response())
    status, _, body = wire.response()
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    _assert_prediction(*wire.response())


def test_a_request_split_across_reads_is_read_whole(wire: Wire) -> None:
    request = _predict_request(b'{"inputs": [[1, 2, 3]]}') + HEALTH_REQUEST
    # Mid request line, mid header, between head and body, mid body, into the next one.
    cuts = [5, 30, request.index(b"\r\n\r\n") + 2, request.index(b"\r\n\r\n") + 4,
            request.index(b"\r\n\r\n") + 10, len(request) - 10, len(request)]
    start = 0
    for cut in cuts:
        wire.send(request[start:cut])
        start = cut
        time.sleep(0.01)  # so each piece arrives as its own read
    _assert_prediction(*wire.response())
    assert wire.response()[0] == 200


def test_body_bytes_that_look_like_requests_are_discarded(wire: Wire) -> None:
    wire.send(_predict_request(HEALTH_REQUEST * 3))
    _assert_prediction(*wire.response())
    wire.send(HEALTH_REQUEST)
    assert wire.response()[0] == 200
    wire.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):  # no answers to the health requests inside the body
        wire._fill()


@pytest.mark.parametrize(("why", "request_", "status"), [
    ("bad request line", b"NONSENSE\r\n\r\n", 400),
    ("request line with too many parts", b"GET / x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("malformed header", b"POST /predict HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", 400),
    ("folded header", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  more\r\n\r\n", 400),
    ("bad Content-Length", b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
     400),
    ("conflicting Content-Length", b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 1"
     b"\r\nContent-Length: 2\r\n\r\nab", 400),
    ("no Host", b"GET /health HTTP/1.1\r\n\r\n", 400),
    ("body over limit", b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n"
     b"\r\n", 413),
    ("chunked body", b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0\r\n\r\n", 501),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("head over 64 KiB", b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000, 431),
])
def test_malformed_requests_get_an_error_and_a_close_and_the_server_lives(
        server: NullHttpTarget, wire: Wire, why: str, request_: bytes, status: int) -> None:
    wire.send(request_)
    got, headers, body = wire.response()
    assert got == status, body
    assert headers["connection"] == "close"
    assert json.loads(body)["status"] == status
    assert wire.closed_by_server()
    assert server.health()  # a new connection is served


def test_unknown_path_and_wrong_method_keep_the_connection(wire: Wire) -> None:
    wire.send(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wire.response()[0] == 404
    wire.send(b"GET /predict HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, _ = wire.response()
    assert status == 405
    assert headers["allow"] == "POST"
    wire.send(_predict_request())
    _assert_prediction(*wire.response())


def test_connection_close_is_honoured(wire: Wire) -> None:
    wire.send(_predict_request(extra=b"Connection: close\r\n"))
    status, headers, body = wire.response()
    _assert_prediction(status, headers, body)
    assert headers["connection"] == "close"
    assert wire.closed_by_server()


def test_http_1_0_closes_unless_kept_alive(server: NullHttpTarget) -> None:
    once = Wire(server)
    once.send(b"GET /health HTTP/1.0\r\n\r\n")
    assert once.response()[0] == 200
    assert once.closed_by_server()
    once.close()
    kept = Wire(server)
    for _ in range(2):
        kept.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert kept.response()[0] == 200
    kept.close()


def test_expect_100_continue_is_answered(wire: Wire) -> None:
    wire.send(_predict_request(extra=b"Expect: 100-continue\r\n").partition(b"\r\n\r\n")[0]
              + b"\r\n\r\n")
    wire.sock.settimeout(5)
    while b"\r\n\r\n" not in wire.buffer:
        assert wire._fill()
    assert wire.buffer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    wire.buffer = wire.buffer[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    wire.send(b'{"inputs": [[0.0]]}')
    _assert_prediction(*wire.response())


def test_several_workers_share_the_port_and_all_stop(cpus: CpuPlan) -> None:
    target = NullHttpTarget("null", list(cpus.target), "json", workers=2)

    def answering_pid() -> int:
        connection = Wire(target)
        try:
            connection.send(HEALTH_REQUEST)
            pid: int = json.loads(connection.response()[2])["pid"]
            return pid
        finally:
            connection.close()

    assert_two_workers_serve_and_stop(target, answering_pid)


def test_taken_port_is_a_clear_error(server: NullHttpTarget) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "targets.nullhttp", "--port", str(server.port)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert "cannot bind" in done.stderr
    assert "--port" in done.stderr


# -- the null bundle through a model server ---------------------------------------------
def test_serve_grpc_with_the_null_bundle_answers(cpus: CpuPlan, null: NullBundle,
                                                 tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "harness", "serve", "grpc", "--bundle", "null",
         "--port", str(port), "--cpus", format_cpus(cpus.target)],
        log_path=tmp_path / "serve.log",
    )
    client = GrpcClient(f"127.0.0.1:{port}")
    server.launch()
    try:
        server.wait_ready(lambda: client.health() == "SERVING", 120,
                          "deploybench serve grpc --bundle null")
        for example in null.example_requests():
            assert client.predict(example) == serve_batch(null, example)
        batch = np.concatenate(null.example_requests()[:4])
        assert client.predict(batch) == [ANSWER] * 4
    finally:
        client.close()
        server.stop()
