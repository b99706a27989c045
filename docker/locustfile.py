"""Load for docker-compose.yml's served targets, from Locust's own master and workers.

``DEPLOYBENCH_TARGET`` (flask by default, fastapi, grpc or lambda) picks the service, on the port
the compose file gives it. Closed loop: each user sends one of the digits bundle's 64
example requests as soon as the previous one is answered:

* flask: ``POST /predict`` on 127.0.0.1:8000 with ``{"inputs": [[64 floats]]}``, as the
  docs/wire-api.md's Flask API describes;
* fastapi: the same request on 127.0.0.1:8001;
* lambda: the same request through the emulator's Function URL on 127.0.0.1:9000;
* grpc: ``Predict`` on 127.0.0.1:50051 with the tensor as raw float32 bytes (one channel
  per user, gRPC switched to gevent).

Every answer is decoded and checked as the harness's users do it (one prediction per
request row, a label among finite probabilities); one that is not counts as a failure.
This is plain Locust for bringing the comparison up by hand: `deploybench run` uses its
own users and listener (harness/loadgen/swarm/users/), which record every request's latency
to the microsecond.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any, ClassVar

from locust import FastHttpUser, User, constant, task

from targets.bundles.resolve import get_bundle
from targets.wire.codec import answer_problem, decode_predictions

TARGETS = {"flask": "http://127.0.0.1:8000", "fastapi": "http://127.0.0.1:8001",
           "lambda": "http://127.0.0.1:9000", "grpc": "127.0.0.1:50051"}
TARGET = os.environ.get("DEPLOYBENCH_TARGET") or "flask"
if TARGET not in TARGETS:
    raise SystemExit(f"DEPLOYBENCH_TARGET={TARGET!r}: expected one of {', '.join(TARGETS)}")

#: The same requests the harness sends (the bundle's held-out examples; no torch needed).
EXAMPLES = get_bundle("digits").example_requests()


class HttpPredictUser(FastHttpUser):
    """flask, fastapi, or lambda's Function URL: the same body on each."""

    abstract = TARGET == "grpc"
    host = TARGETS[TARGET] if TARGET != "grpc" else TARGETS["flask"]
    wait_time = constant(0)
    bodies: ClassVar[list[bytes]] = [json.dumps({"inputs": example.tolist()}).encode()
                                     for example in EXAMPLES]
    headers: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}

    @task
    def predict(self) -> None:
        with self.client.post("/predict", data=random.choice(self.bodies),
                              headers=self.headers, catch_response=True) as response:
            content = response.content or b""
            problem = answer_problem(lambda: decode_predictions(content), None) \
                if response.status_code == 200 else None
            if problem is not None:
                response.failure(f"200 with {problem}")


class GrpcPredictUser(User):
    abstract = TARGET != "grpc"
    host = TARGETS["grpc"]
    wait_time = constant(0)

    def on_start(self) -> None:
        import grpc

        from targets.grpc.client import CHANNEL_OPTIONS, PREDICT_METHOD, encode_request

        self.messages = [encode_request(example) for example in EXAMPLES]
        self.channel = grpc.insecure_channel(self.host, options=CHANNEL_OPTIONS)
        self.call = self.channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def predict(self) -> None:
        import grpc

        from targets.grpc.client import TIMEOUT_S

        started = time.perf_counter()
        failure: Exception | None = None
        answer = b""
        try:
            answer = self.call(random.choice(self.messages), timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            failure = RuntimeError(f"{exc.code().name}: {exc.details()}")
        if failure is None:
            from targets.grpc.client import decode_response
            from targets.grpc.predict_pb2 import PredictResponse

            problem = answer_problem(
                lambda: decode_response(PredictResponse.FromString(answer)), None)
            if problem is not None:
                failure = RuntimeError(f"OK with {problem}")
        context: dict[str, Any] = {}
        self.environment.events.request.fire(
            request_type="grpc", name="Predict", context=context, exception=failure,
            response_time=(time.perf_counter() - started) * 1000, response_length=len(answer))


if TARGET == "grpc":
    # Before any channel exists: without it gRPC's C core blocks the whole gevent loop.
    import grpc.experimental.gevent as grpc_gevent

    grpc_gevent.init_gevent()
