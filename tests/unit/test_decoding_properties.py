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

from targets import codec
from targets.awslambda.invoke import encode_event
from targets.errors import RequestError
from targets.grpc import predict_pb2
from targets.grpc.client import encode_request as grpc_request

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
    """As targets/awslambda/handler.py decodes a direct invocation."""
    event = json.loads(encode_event(batch, encoding))
    if "data" in event:
        out = codec.decode_tensor(base64.b64decode(event["data"]), tuple(event["shape"]),
                                  INPUT, LIMITS)
    else:
        out = codec.decode_document(event, INPUT, LIMITS)
    np.testing.assert_array_equal(out, batch)


@FAST
@given(batch=batches)
def test_grpc_requests_round_trip(batch: np.ndarray) -> None:
    """As targets/grpc/server.py decodes a PredictRequest."""
    request = predict_pb2.PredictRequest.FromString(grpc_request(batch))
    assert request.dtype == predict_pb2.FLOAT32
    out = codec.decode_tensor(request.data, tuple(request.shape), INPUT, LIMITS)
    np.testing.assert_array_equal(out, batch)


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
    """Bytes that protobuf cannot parse are refused before (the server answers
    INVALID_ARGUMENT); whatever it can parse is decoded or refused as a client error."""
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    try:
        request = predict_pb2.PredictRequest.FromString(wire)
    except DecodeError:
        return
    _decode_or_client_error(codec.decode_tensor, request.data, tuple(request.shape), INPUT,
                            LIMITS)


def test_the_properties_can_fail() -> None:
    """The checker itself: a decoder that lets NaN through is caught."""
    with pytest.raises(AssertionError):
        _decode_or_client_error(lambda: np.full((1, 4), np.nan, dtype=np.float32))
