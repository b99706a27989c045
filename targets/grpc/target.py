"""The gRPC target as the orchestrator sees it: a grpc.server (a local process or a
container), spoken to through :class:`targets.grpc.client.GrpcClient`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from targets.grpc.client import ENCODING, GrpcClient
from targets.grpc.server import DEFAULT_API, DEFAULT_THREADS
from targets.served import ServedTarget


@dataclass(frozen=True)
class GrpcOptions:
    """``run --grpc-workers/--grpc-threads/--grpc-api`` (None: the default)."""

    workers: int | None = None
    threads: int | None = None
    #: gRPC's Python API for the server: "sync" or "aio".
    api: str | None = None


class GrpcTarget(ServedTarget[GrpcClient]):
    name = "grpc"
    server_module = "targets.grpc.server"
    server_kind = "grpc.server (thread pool) + health + reflection"
    default_threads = DEFAULT_THREADS
    #: gRPC's metrics are on an HTTP side port (--metrics-port), served by the supervisor.
    metrics_side_port = True

    def __init__(self, *args: Any, api: str = DEFAULT_API, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoding = ENCODING
        #: gRPC's Python API the server runs: "sync" (a thread pool) or "aio" (asyncio).
        self.api = api
        if api == "aio":
            self.server_kind = "grpc.aio server (asyncio) + health + reflection"

    def server_arguments(self) -> list[str]:
        return ["--api", self.api]

    def make_client(self) -> GrpcClient:
        return GrpcClient(self.address)
