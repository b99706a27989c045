"""A blocking gRPC client for health checks, parity and the independent benchmark client
(not for Locust, which needs gevent-mode gRPC: see :mod:`harness.loadgen.swarm.users.grpc`).

It is the gRPC deployment's protocol client (:class:`targets.base.PredictClient`), the
same whether deploybench started the server or it runs elsewhere (``grpc://``).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from targets.base import ClientBase, Health, LoadSpec
from targets.bundles.protocol import Prediction
from targets.errors import TargetError
from targets.grpc import predict_pb2

if TYPE_CHECKING:
    import grpc

PREDICT_METHOD = "/deploybench.v1.Predictor/Predict"
#: Every channel gets its own connection: gRPC would otherwise share one subchannel
#: between channels to the same address, and N users would be one HTTP/2 connection.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)
#: The orchestrator's own channel polls a server that is still starting: gRPC's default
#: reconnect back-off (1 s, growing) would notice it up late and inflate the start time.
PROBE_OPTIONS = (*CHANNEL_OPTIONS, ("grpc.initial_reconnect_backoff_ms", 20),
                 ("grpc.min_reconnect_backoff_ms", 20), ("grpc.max_reconnect_backoff_ms", 50))
TIMEOUT_S = 30.0
#: What a gRPC deployment's requests are, whatever the run's encoding.
ENCODING = "protobuf: raw float32 bytes + shape"


def request_message(batch: np.ndarray) -> Any:
    """The PredictRequest for ``batch`` (float32, C order, little-endian)."""
    data = np.ascontiguousarray(batch, dtype="<f4")
    return predict_pb2.PredictRequest(data=data.tobytes(), shape=list(data.shape),
                                      dtype=predict_pb2.FLOAT32)


def encode_request(batch: np.ndarray) -> bytes:
    """A serialised PredictRequest for ``batch``."""
    out: bytes = request_message(batch).SerializeToString()
    return out


def decode_response(answer: Any) -> list[Prediction]:
    return [Prediction(int(p.label), tuple(float(x) for x in p.probabilities))
            for p in answer.predictions]


class GrpcClient(ClientBase):
    """``GrpcClient("127.0.0.1:50051")``: its channel opens at the first call, and again
    after :meth:`close`."""

    encoding = ENCODING

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: grpc.Channel | None = None
        self._stub: Any = None

    @property
    def channel(self) -> grpc.Channel:
        import grpc

        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address, options=PROBE_OPTIONS)
        return self._channel

    @property
    def stub(self) -> Any:
        if self._stub is None:
            # The generated stubs import gRPC's core, which a module importing this one
            # may not start yet (banned-module-level-imports in pyproject.toml).
            from targets.grpc import predict_pb2_grpc  # noqa: PLC0415

            self._stub = predict_pb2_grpc.PredictorStub(self.channel)  # type: ignore[no-untyped-call]
        return self._stub

    def health(self, service: str = "") -> str | None:
        """The health service's status name (``SERVING``...), or None when unreachable."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        except grpc.RpcError:
            return None
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return name

    def server_pid(self) -> int | None:
        import grpc

        try:
            info = self.stub.Info(predict_pb2.InfoRequest(), timeout=1.0)
        except grpc.RpcError:
            return None
        return int(info.pid)

    def call(self, request: Any, timeout_s: float = TIMEOUT_S) -> Any:
        """``Predict`` with a PredictRequest message; raises grpc.RpcError."""
        return self.stub.Predict(request, timeout=timeout_s)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        import grpc

        try:
            return decode_response(self.call(request_message(batch)))
        except grpc.RpcError as exc:
            raise TargetError(f"grpc Predict on {self.address} failed: {exc.code().name}: "
                              f"{exc.details()}") from exc

    def probe(self) -> Health:
        """SERVING from the health service, and the PID the server's Info gives."""
        if self.health() != "SERVING":
            return Health(False)
        return Health(True, self.server_pid())

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        return {"protocol": "grpc", "address": self.address, "method": PREDICT_METHOD,
                "messages_b64": [base64.b64encode(encode_request(e)).decode()
                                 for e in examples]}

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel, self._stub = None, None
