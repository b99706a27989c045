"""Property-based tests (hypothesis) of request decoding, for every encoding: JSON and
binary bodies (flask, the Function URL), the Lambda direct event, and gRPC's
PredictRequest.

Two properties each: whatever a well-behaved client encodes comes back exactly; and
whatever arrives (any bytes, any JSON, any headers) is either a valid batch or a
RequestError with a 4xx and a message, never another exception.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from targets.awslambda.events import decode_direct_event, decode_url_event
from targets.awslambda.invoke import encode_event
from targets.errors import RequestError
from targets.grpc import predict_pb2
from targets.grpc.client import encode_request as grpc_request
from targets.grpc.decode import decode_predict_request
from targets.wire import codec

INPUT = (4,)
LIMITS = codec.Limits(max_body_bytes=4096, max_batch=8)
CLIENT_ERRORS = {400, 413, 415}
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(width=32, allow_nan=False, allow_infinity=False)
batches = hnp.arrays(np.float32, st.tuples(st.integers(1, LIMITS.max_batch),
                                           st.just(INPUT[0])), elements=finite)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=40)
scalars = (st.floats(allow_nan=False, allow_infinity=False) | st.integers(-2**130, 2**130)
           | st.booleans() | st.none() | st.text(max_size=3))
#: Shaped like a request, with anything in it: rows of about the right width, values that
#: overflow float32 (1e39, 2**130), booleans, nulls, strings, sometimes an extra field.
near_documents = st.fixed_dictionaries(
    {"inputs": st.lists(st.lists(scalars, min_size=3, max_size=5)
                        | st.lists(st.floats(allow_nan=False), min_size=4, max_size=4),
                        max_size=10)},
    optional={"extra": scalars})
#: A shape and exactly as many bytes as it needs (any bit patterns: NaN and infinity
#: included), or any other length.
near_tensors = st.lists(st.integers(0, 9), min_size=1, max_size=3).flatmap(
    lambda shape: st.tuples(
        st.just(tuple(shape)),
        st.binary(min_size=4 * int(np.prod(shape)), max_size=4 * int(np.prod(shape)))
        | st.binary(max_size=64)))
header_values = st.none() | st.text(max_size=20) | st.sampled_from(["1,4", "2,4", "float32"])


def _valid(batch: np.ndarray) -> None:
    assert batch.dtype == np.float32
    assert batch.shape[1:] == INPUT
    assert 1 <= batch.shape[0] <= LIMITS.max_batch
    assert np.isfinite(batch).all()


def _decode_or_client_error(decode: Any, *args: Any) -> None:
    error: RequestError | None = None
    try:
        batch = decode(*args)
    except RequestError as exc:
        error = exc
    if error is None:
        _valid(batch)
    else:
        assert error.status in CLIENT_ERRORS
        assert error.message


# -- what clients encode comes back exactly -----------------------------------------------

@FAST
@given(batch=batches, encoding=st.sampled_from(codec.ENCODINGS))
def test_http_bodies_round_trip(batch: np.ndarray, encoding: str) -> None:
    body, headers = codec.encode_request(batch, encoding)
    out = codec.decode_request(headers["Content-Type"], body, headers, INPUT,
                               codec.Limits(max_body_bytes=1 << 20, max_batch=8))
    np.testing.assert_array_equal(out, batch)


@FAST
@given(batch=batches, encoding=st.sampled_from(codec.ENCODINGS))
def test_lambda_events_round_trip(batch: np.ndarray, encoding: str) -> None:
    """The handler's own decoder (targets/awslambda/events.py), direct invocation."""
    event = json.loads(encode_event(batch, encoding))
    np.testing.assert_array_equal(decode_direct_event(event, INPUT, LIMITS), batch)


@FAST
@given(batch=batches, encoding=st.sampled_from(codec.ENCODINGS))
def test_function_url_events_round_trip(batch: np.ndarray, encoding: str) -> None:
    """As the front door wraps a body: binary bodies base64-encoded in the event."""
    body, headers = codec.encode_request(batch, encoding)
    binary = encoding == "binary"
    event = {"headers": {k.lower(): v for k, v in headers.items()},
             "body": base64.b64encode(body).decode() if binary else body.decode(),
             "isBase64Encoded": binary}
    np.testing.assert_array_equal(decode_url_event(event, INPUT, LIMITS), batch)


@FAST
@given(batch=batches)
def test_grpc_requests_round_trip(batch: np.ndarray) -> None:
    """The server's own decoder (targets/grpc/decode.py)."""
    np.testing.assert_array_equal(decode_predict_request(grpc_request(batch), INPUT, LIMITS),
                                  batch)


# -- whatever arrives: a valid batch or a client error ------------------------------------

@FAST
@given(doc=json_values)
def test_any_json_document(doc: Any) -> None:
    _decode_or_client_error(codec.decode_document, doc, INPUT, LIMITS)
    body = json.dumps(doc).encode()
    _decode_or_client_error(codec.decode_request, "application/json", body, {}, INPUT, LIMITS)


@FAST
@given(doc=near_documents)
def test_any_request_shaped_document(doc: Any) -> None:
    _decode_or_client_error(codec.decode_document, doc, INPUT, LIMITS)


@FAST
@given(tensor=near_tensors)
def test_any_request_shaped_tensor(tensor: tuple[tuple[int, ...], bytes]) -> None:
    shape, data = tensor
    _decode_or_client_error(codec.decode_tensor, data, shape, INPUT, LIMITS)
    headers = {codec.SHAPE_HEADER: ",".join(map(str, shape))}
    _decode_or_client_error(codec.decode_request, "application/octet-stream", data, headers,
                            INPUT, LIMITS)


@FAST
@given(body=st.binary(max_size=300), content_type=st.sampled_from(
    [None, "", "application/json", "application/octet-stream", "text/plain",
     "application/json; charset=utf-8"]), shape=header_values, dtype=header_values)
def test_any_body_and_headers(body: bytes, content_type: str | None, shape: str | None,
                              dtype: str | None) -> None:
    headers = {k: v for k, v in ((codec.SHAPE_HEADER, shape), (codec.DTYPE_HEADER, dtype))
               if v is not None}
    _decode_or_client_error(codec.decode_request, content_type, body, headers, INPUT, LIMITS)


@FAST
@given(data=st.binary(max_size=200),
       shape=st.lists(st.integers(-2**63, 2**63 - 1), max_size=4))
def test_any_tensor_and_shape(data: bytes, shape: list[int]) -> None:
    _decode_or_client_error(codec.decode_tensor, data, tuple(shape), INPUT, LIMITS)


@FAST
@given(wire=st.binary(max_size=200))
def test_any_grpc_bytes(wire: bytes) -> None:
    """Bytes protobuf cannot parse, any dtype, any shape: a batch or a client error."""
    _decode_or_client_error(decode_predict_request, wire, INPUT, LIMITS)


@FAST
@given(data=st.binary(max_size=64), shape=st.lists(st.integers(-2**70, 2**70), max_size=3),
       dtype=st.integers(-3, 2**31 - 1))
def test_any_grpc_request(data: bytes, shape: list[int], dtype: int) -> None:
    """Well-formed PredictRequests with any content (dtypes unknown to the enum too)."""
    shape = [d for d in shape if -2**63 <= d < 2**63]
    try:
        wire = predict_pb2.PredictRequest(data=data, shape=shape, dtype=dtype)
    except ValueError:  # outside protobuf's own enum range
        return
    _decode_or_client_error(decode_predict_request, wire.SerializeToString(), INPUT, LIMITS)


@FAST
@given(event=json_values | st.dictionaries(
    st.sampled_from(["data", "shape", "dtype", "inputs", "extra"]),
    json_values | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    max_size=4))
def test_any_direct_event(event: Any) -> None:
    """Whatever the Invoke API is given: a batch or a client error (the handler raises
    InvalidRequest with its message)."""
    _decode_or_client_error(decode_direct_event, event, INPUT, LIMITS)


@FAST
@given(body=st.text(max_size=120) | st.binary(max_size=90).map(
           lambda b: base64.b64encode(b).decode()),
       encoded=st.booleans() | st.none(),
       content_type=st.sampled_from([None, "application/json", "application/octet-stream",
                                     "text/plain"]),
       shape=header_values)
def test_any_function_url_event(body: str, encoded: bool | None, content_type: str | None,
                                shape: str | None) -> None:
    headers = {k: v for k, v in (("content-type", content_type),
                                 (codec.SHAPE_HEADER.lower(), shape)) if v is not None}
    event = {"headers": headers, "body": body, "isBase64Encoded": encoded}
    _decode_or_client_error(decode_url_event, event, INPUT, LIMITS)


def test_the_properties_can_fail() -> None:
    """The checker itself: a decoder that lets NaN through is caught."""
    with pytest.raises(AssertionError):
        _decode_or_client_error(lambda: np.full((1, 4), np.nan, dtype=np.float32))
