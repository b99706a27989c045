"""gRPC prediction user: one channel (one HTTP/2 connection) per user, as Locust's own
gRPC example does, with gRPC switched to gevent so calls yield to other users.

Requests are sent pre-serialised (a method with no serialisers), as the HTTP user sends
pre-built requests. Every answer is parsed (``PredictResponse.FromString``) and turned
into predictions, as a client does with what it receives, inside the timed call, and
checked: one prediction per request row, each a label among the expected number of
finite probabilities (``targets.wire.codec.answer_problem``). Parity checked the content once.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any, ClassVar

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, task

from harness.loadgen.control import LoadControl
from harness.loadgen.swarm.users.closedloop import LoadUserMixin, answer_shapes
from targets.grpc.client import CHANNEL_OPTIONS, TIMEOUT_S, decode_response
from targets.grpc.predict_pb2 import PredictResponse
from targets.wire.codec import AnswerShape, answer_problem

# Before any channel exists: without it gRPC's C core blocks the whole gevent loop.
grpc_gevent.init_gevent()


class GrpcFailure(Exception):
    """A failed call, named by its status code as gRPC tools print it."""


class GrpcPredictUser(LoadUserMixin, User):
    abstract = True
    address: ClassVar[str]
    method: ClassVar[str]
    messages: ClassVar[list[bytes]]
    #: What a well-formed answer to each message holds (None: not known).
    answers: ClassVar[list[AnswerShape | None]]

    def on_start(self) -> None:
        super().on_start()
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.call = self.channel.unary_unary(self.method)  # bytes in, bytes out
        self.requests = list(zip(self.messages, self.answers, strict=True))

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def predict(self) -> None:
        self.step()

    def items(self) -> list[tuple[bytes, AnswerShape | None]]:
        return self.requests

    def send(self, item: tuple[bytes, AnswerShape | None], intended: float | None = None,
             queued: bool = False) -> None:
        message, shape = item
        with self.timed("grpc", "Predict", intended, queued) as call:
            try:
                answer = self.call(message, timeout=TIMEOUT_S)
            except grpc.RpcError as exc:
                call.failure = GrpcFailure(f"{exc.code().name}: {exc.details()}")
                return
            call.length = len(answer)
            problem = answer_problem(
                lambda: decode_response(PredictResponse.FromString(answer)), shape)
            if problem is not None:
                call.failure = GrpcFailure(f"OK with {problem}")


def make_user(spec: dict[str, Any], control: LoadControl) -> type[GrpcPredictUser]:
    messages = [base64.b64decode(m) for m in spec["messages_b64"]]
    attrs = {
        "abstract": False, "address": spec["address"], "method": spec["method"],
        "messages": messages, "answers": answer_shapes(spec, len(messages)),
        "control": control, "_ids": itertools.count(),
    }
    return type("GrpcPredict", (GrpcPredictUser,), attrs)
