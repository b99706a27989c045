"""gRPC prediction user: one channel (one HTTP/2 connection) per user, as Locust's own
gRPC example does, with gRPC switched to gevent so calls yield to other users.

Requests are sent pre-serialised and answers kept as bytes (a method with no
serialisers), so the load generator spends no time on protobuf per call; parity has
already checked the answers' content, and an empty answer counts as a failure.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any, ClassVar

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, task

from scenarios.control import LoadControl
from scenarios.users.closedloop import LoadUserMixin
from targets.grpc.client import CHANNEL_OPTIONS, TIMEOUT_S

# Before any channel exists: without it gRPC's C core blocks the whole gevent loop.
grpc_gevent.init_gevent()


class GrpcFailure(Exception):
    """A failed call, named by its status code as gRPC tools print it."""


class GrpcPredictUser(LoadUserMixin, User):
    abstract = True
    address: ClassVar[str]
    method: ClassVar[str]
    messages: ClassVar[list[bytes]]

    def on_start(self) -> None:
        super().on_start()
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.call = self.channel.unary_unary(self.method)  # bytes in, bytes out

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def predict(self) -> None:
        self.step()

    def items(self) -> list[bytes]:
        return self.messages

    def send(self, item: bytes, intended: float | None = None, queued: bool = False) -> None:
        with self.timed("grpc", "Predict", intended, queued) as call:
            try:
                answer = self.call(item, timeout=TIMEOUT_S)
            except grpc.RpcError as exc:
                call.failure = GrpcFailure(f"{exc.code().name}: {exc.details()}")
                return
            call.length = len(answer)
            if not call.length:
                call.failure = GrpcFailure("OK with an empty PredictResponse")


def make_user(spec: dict[str, Any], control: LoadControl) -> type[GrpcPredictUser]:
    attrs = {
        "abstract": False, "address": spec["address"], "method": spec["method"],
        "messages": [base64.b64decode(m) for m in spec["messages_b64"]],
        "control": control, "_ids": itertools.count(),
    }
    return type("GrpcPredict", (GrpcPredictUser,), attrs)
