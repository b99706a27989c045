"""What one request's wire encoding costs, timed in the harness's own process.

The report splits a served target's latency into the model (in-process latency), the
encoding (this), and the rest: transport, the server framework and, under load, queueing.
Encode and decode of the request and of the response are timed here on the example
request, as the client and the server each do them; the harness runs on the load
generator's CPUs, which are the same kind as the target's.

Of the four, three are on the path a measured request takes: the server decodes the
request and encodes its answer, and the load user decodes every answer (as a real
client does). The request's own encoding is not: the load sends requests encoded once,
before the load. ``on_path_ms`` is the sum of those three, the share of the measured
latency the report's breakdown calls encoding; ``total_ms`` is all four, what the
encoding costs a client and a server together (the encodings comparison).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from reports.runblocks import CodecCost
from targets.bundles.protocol import Prediction
from targets.grpc import client, predict_pb2
from targets.grpc.server import response_message
from targets.wire import codec

#: The steps a measured request's latency holds (see the module doc).
ON_PATH = ("request_decode", "response_encode", "response_decode")
#: Each step is repeated for at least this long, and its median per-call time kept.
MIN_TIME_S = 0.05
MIN_CALLS = 20


def _per_call_ms(step: Callable[[], object]) -> float:
    """Median of batches of calls: robust to a scheduler hiccup in one batch."""
    step()  # warm: imports, first-call caches
    batch = 1
    while True:
        started = time.perf_counter()
        for _ in range(batch):
            step()
        took = time.perf_counter() - started
        if took >= MIN_TIME_S / 5 or batch >= 1 << 16:
            break
        batch *= 2
    per_call: list[float] = []
    while len(per_call) < 5 or sum(per_call) * batch < MIN_TIME_S:
        started = time.perf_counter()
        for _ in range(batch):
            step()
        per_call.append((time.perf_counter() - started) / batch)
    return float(np.median(per_call)) * 1000.0


def _http_steps(example: np.ndarray, predictions: list[Prediction], encoding: str,
                input_shape: tuple[int, ...]) -> dict[str, Callable[[], object]]:
    body, headers = codec.encode_request(example, encoding)
    lower = {k.lower(): v for k, v in headers.items()}
    answer = codec.encode_predictions(predictions)
    return {
        "request_encode": lambda: codec.encode_request(example, encoding),
        "request_decode": lambda: codec.decode_request(
            headers["Content-Type"], body, _Headers(lower), input_shape),
        "response_encode": lambda: codec.encode_predictions(predictions),
        "response_decode": lambda: codec.decode_predictions(answer),
    }


def _grpc_steps(example: np.ndarray, predictions: list[Prediction],
                input_shape: tuple[int, ...]) -> dict[str, Callable[[], object]]:
    wire = client.encode_request(example)
    answer = response_message(predictions).SerializeToString()

    def decode_request() -> object:
        message = predict_pb2.PredictRequest.FromString(wire)
        return codec.decode_tensor(message.data, tuple(message.shape), input_shape,
                                   codec.DEFAULT_LIMITS)

    return {
        "request_encode": lambda: client.encode_request(example),
        "request_decode": decode_request,
        "response_encode": lambda: response_message(predictions).SerializeToString(),
        "response_decode": lambda: client.decode_response(
            predict_pb2.PredictResponse.FromString(answer)),
    }


class _Headers:
    """Case-insensitive ``get`` over lower-case keys, as a server's headers."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key.lower(), default)


def codec_cost(protocol: str, encoding: str, example: np.ndarray,
               predictions: list[Prediction]) -> CodecCost | None:
    """Per-step and total milliseconds for one request of ``example`` (None in-process)."""
    input_shape = tuple(example.shape[1:])
    if protocol == "grpc":
        steps = _grpc_steps(example, predictions, input_shape)
        name = "protobuf (tensor as raw bytes)"
    elif protocol == "http":
        steps = _http_steps(example, predictions, encoding, input_shape)
        name = encoding
    else:
        return None
    out: dict[str, Any] = {f"{k}_ms": _per_call_ms(step) for k, step in steps.items()}
    out["total_ms"] = sum(out.values())
    out["on_path_ms"] = sum(out[f"{k}_ms"] for k in ON_PATH)
    out["encoding"] = name
    out["request_bytes"] = len(codec.encode_request(example, encoding)[0]) \
        if protocol == "http" else len(_grpc_wire(example))
    return cast("CodecCost", out)  # its keys: the steps' names, built above


def _grpc_wire(example: np.ndarray) -> bytes:
    return client.encode_request(example)
