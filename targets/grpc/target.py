"""The gRPC target as the orchestrator sees it: a grpc.server process on loopback."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from targets.base import LoadSpec
from targets.grpc.client import PREDICT_METHOD, GrpcClient, encode_request
from targets.grpc.server import DEFAULT_API, DEFAULT_THREADS
from targets.served import ServedTarget

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction


class GrpcTarget(ServedTarget):
    name = "grpc"
    server_module = "targets.grpc.server"
    server_kind = "grpc.server (thread pool) + health + reflection"
    default_threads = DEFAULT_THREADS

    def __init__(self, *args: Any, api: str = DEFAULT_API, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoding = "protobuf: raw float32 bytes + shape"
        #: gRPC's Python API the server runs: "sync" (a thread pool) or "aio" (asyncio).
        self.api = api
        if api == "aio":
            self.server_kind = "grpc.aio server (asyncio) + health + reflection"
        self._client: GrpcClient | None = None

    def server_arguments(self) -> list[str]:
        return ["--api", self.api]

    def _connect(self) -> None:
        self._client = GrpcClient(self.address)

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _serving_pid(self) -> int | None:
        if self._client is None or self._client.health() != "SERVING":
            return None
        return self._client.server_pid()

    @property
    def client(self) -> GrpcClient:
        assert self._client is not None, "start() first"
        return self._client

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        return self.client.predict(batch)

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        assert self._server is not None, "start() first"
        return {
            "protocol": "grpc", "address": self.address, "method": PREDICT_METHOD,
            "messages_b64": [base64.b64encode(encode_request(e)).decode() for e in examples],
            "cpus": self.cpus, "watch_pids": [self._server.pid],
        }
