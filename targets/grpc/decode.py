"""The gRPC server's request decoding, as a pure function the property tests
(tests/unit/test_decoding_properties.py) call too. Its imports are made once, at module
import (the server imports this module when it builds its server, after forking), not
on each request.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from targets.errors import RequestError
from targets.grpc import predict_pb2
from targets.wire import codec


def decode_predict_request(data: bytes, input_shape: tuple[int, ...],
                           limits: codec.Limits) -> np.ndarray:
    """A serialised PredictRequest as a float32 batch, or RequestError naming the
    problem: bytes protobuf cannot parse, a dtype other than FLOAT32, and whatever
    :func:`targets.wire.codec.decode_tensor` refuses (shape, length, NaN, limits).

    Parsed here rather than by gRPC, whose own failure to parse a request is an INTERNAL
    error: bytes that are no PredictRequest are the client's mistake.
    """
    try:
        request = predict_pb2.PredictRequest.FromString(data)
    except DecodeError:
        raise RequestError(400, "the request is not a PredictRequest message (protobuf "
                                "cannot parse it)") from None
    if request.dtype != predict_pb2.FLOAT32:
        name = predict_pb2.DType.Name(request.dtype) if request.dtype in \
            predict_pb2.DType.values() else str(request.dtype)
        problem = ("dtype is missing" if request.dtype == predict_pb2.DTYPE_UNSPECIFIED
                   else f"dtype {name} is not supported")
        raise RequestError(400, f"{problem}; send FLOAT32")
    return codec.decode_tensor(request.data, tuple(request.shape), input_shape, limits)
