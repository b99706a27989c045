"""What each payload encoding costs: encoding a request and decoding it as the server
does, and the predictions' way back, per encoding and bundle (digits: 64 floats;
vision: a 3x224x224 image)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from targets.awslambda.invoke import encode_event
from targets.bundles.protocol import serve_batch
from targets.grpc import predict_pb2
from targets.grpc.client import encode_request as grpc_request
from targets.wire import codec

ENCODINGS = ("json", "binary", "protobuf", "lambda-event-json", "lambda-event-binary")


def _round_trip(encoding: str, batch: np.ndarray, input_shape: tuple[int, ...]) -> Any:
    limits = codec.Limits(max_body_bytes=1 << 30, max_batch=64)
    if encoding in codec.ENCODINGS:
        body, headers = codec.encode_request(batch, encoding)
        return codec.decode_request(headers["Content-Type"], body, headers, input_shape,
                                    limits)
    if encoding == "protobuf":
        request = predict_pb2.PredictRequest.FromString(grpc_request(batch))
        return codec.decode_tensor(request.data, tuple(request.shape), input_shape, limits)
    event = json.loads(encode_event(batch, encoding.rsplit("-", 1)[1]))
    if "data" in event:
        return codec.decode_tensor(base64.b64decode(event["data"]), tuple(event["shape"]),
                                   input_shape, limits)
    return codec.decode_document(event, input_shape, limits)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("bundle_name", ["digits", "vision"])
def test_request(benchmark: Any, request: pytest.FixtureRequest, bundle_name: str,
                 encoding: str) -> None:
    bundle = request.getfixturevalue(bundle_name)
    batch = bundle.example_requests()[0]
    benchmark.group = f"request encode+decode ({bundle_name})"
    benchmark.extra_info["request_bytes"] = (
        len(codec.encode_request(batch, encoding)[0]) if encoding in codec.ENCODINGS
        else len(grpc_request(batch)) if encoding == "protobuf"
        else len(encode_event(batch, encoding.rsplit("-", 1)[1])))
    out = benchmark(_round_trip, encoding, batch, bundle.input_shape)
    np.testing.assert_array_equal(out, batch)


def test_predictions_json(benchmark: Any, digits) -> None:  # type: ignore[no-untyped-def]
    """The answer's way back (every HTTP target and Lambda answer in JSON)."""
    predictions = serve_batch(digits, digits.example_requests()[0])
    benchmark.group = "predictions encode+decode"
    out = benchmark(lambda: codec.decode_predictions(codec.encode_predictions(predictions)))
    assert out == predictions
