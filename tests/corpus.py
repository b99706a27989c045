"""The shared corpus of malformed requests, replayed against every served target by
tests/integration/test_bad_input.py.

Each case is one mistake a client makes, written for each way in that can express it:

* ``http``: a body and headers for ``POST /predict`` (the flask target and the Lambda
  emulator's Function URL, which serve the same API), and the 4xx it must get;
* ``invoke``: a payload for the Lambda Invoke API and what it must get: a function error
  (200 with ``X-Amz-Function-Error``, errorType ``InvalidRequest``) or the API's own 4xx;
* ``grpc``: the serialised bytes of a ``Predict`` call (possibly no protobuf at all) and
  the status code it must get.

The targets run with :data:`LIMITS`, so the oversize cases stay small.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

from targets.grpc import predict_pb2
from targets.wire.codec import Limits

#: Every target in the test runs with these limits (64 KiB, 16 rows).
LIMITS = Limits(max_body_bytes=64 * 1024, max_batch=16)
#: The Lambda Invoke API's own payload limit (6 MB, as AWS's).
INVOKE_MAX_BYTES = 6 * 1024 * 1024
WIDTH = 64  # the digits bundle's input
JSON = {"Content-Type": "application/json"}
BINARY = {"Content-Type": "application/octet-stream"}


@dataclass(frozen=True)
class Http:
    body: bytes
    headers: dict[str, str]
    status: int


@dataclass(frozen=True)
class Invoke:
    payload: bytes
    #: 200: a function error whose errorType is ``error``; else the Invoke API's status
    #: and error code (``error``).
    status: int = 200
    error: str = "InvalidRequest"


@dataclass(frozen=True)
class Grpc:
    message: bytes
    code: str


@dataclass(frozen=True)
class Case:
    name: str
    http: Http | None = None
    invoke: Invoke | None = None
    grpc: Grpc | None = None


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _rows(n: int, width: int = WIDTH, value: float = 0.0) -> list[list[float]]:
    return [[value] * width for _ in range(n)]


def _tensor(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def _proto(data: bytes, shape: list[int], dtype: int = predict_pb2.FLOAT32) -> bytes:
    return bytes(predict_pb2.PredictRequest(data=data, shape=shape, dtype=dtype)
                 .SerializeToString())


def _event(data: bytes, shape: object, dtype: object = "float32", **extra: object) -> bytes:
    return _json({"data": base64.b64encode(data).decode(), "shape": shape, "dtype": dtype,
                  **extra})


ZEROS = _tensor(np.zeros((1, WIDTH)))
NAN = _tensor(np.full((1, WIDTH), np.nan))
INF = _tensor(np.full((1, WIDTH), np.inf))
NESTED = b'{"inputs": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # under the body limit
OVER_BATCH = LIMITS.max_batch + 1

CORPUS: tuple[Case, ...] = (
    Case("invalid JSON",
         http=Http(b"{nope", JSON, 400),
         invoke=Invoke(b"{nope", 400, "InvalidRequestContentException"),
         grpc=Grpc(b"\xff\xff\xff\xff", "INVALID_ARGUMENT")),  # no protobuf either
    Case("not UTF-8",
         http=Http(b'{"inputs": [[\xff\xfe]]}', JSON, 400),
         invoke=Invoke(b'{"inputs": [[\xff\xfe]]}', 400, "InvalidRequestContentException")),
    Case("truncated message",
         http=Http(b'{"inputs": [[0.0, 0.0', JSON, 400),
         invoke=Invoke(b'{"inputs": [[0.0, 0.0', 400, "InvalidRequestContentException"),
         grpc=Grpc(_proto(ZEROS, [1, WIDTH])[:-3], "INVALID_ARGUMENT")),
    Case("empty body",
         http=Http(b"", JSON, 400),
         invoke=Invoke(b""),  # an empty payload is the event {}: no "inputs"
         grpc=Grpc(b"", "INVALID_ARGUMENT")),  # every field missing
    Case("an array, not an object",
         http=Http(b"[1, 2]", JSON, 400),
         invoke=Invoke(b"[1, 2]")),
    Case("missing field",
         http=Http(_json({"x": _rows(1)}), JSON, 400),
         invoke=Invoke(_json({"x": _rows(1)})),
         grpc=Grpc(_proto(ZEROS, []), "INVALID_ARGUMENT")),  # no shape
    Case("extra field",
         http=Http(_json({"inputs": _rows(1), "normalise": True}), JSON, 400),
         invoke=Invoke(_event(ZEROS, [1, WIDTH], normalise=True))),
    Case("inputs not an array",
         http=Http(_json({"inputs": 3}), JSON, 400),
         invoke=Invoke(_json({"inputs": 3}))),
    Case("strings",
         http=Http(_json({"inputs": [["0"] * WIDTH]}), JSON, 400),
         invoke=Invoke(_json({"inputs": [["0"] * WIDTH]}))),
    Case("booleans among numbers",
         http=Http(_json({"inputs": [[1.0] * (WIDTH - 1) + [True]]}), JSON, 400),
         invoke=Invoke(_json({"inputs": [[1.0] * (WIDTH - 1) + [True]]}))),
    Case("nulls",
         http=Http(_json({"inputs": [[None] * WIDTH]}), JSON, 400),
         invoke=Invoke(_json({"inputs": [[None] * WIDTH]}))),
    # Found by schemathesis: a body of brackets and numbers but for an empty object
    # once took the short way through JSON decoding to a 500.
    Case("empty objects among numbers",
         http=Http(_json({"inputs": [[{}] + [0.0] * (WIDTH - 1)]}), JSON, 400),
         invoke=Invoke(_json({"inputs": [[{}] + [0.0] * (WIDTH - 1)]}))),
    Case("ragged rows",
         http=Http(_json({"inputs": [[0.0] * WIDTH, [0.0]]}), JSON, 400),
         invoke=Invoke(_json({"inputs": [[0.0] * WIDTH, [0.0]]}))),
    Case("wrong shape",
         http=Http(_json({"inputs": _rows(1, WIDTH - 1)}), JSON, 400),
         invoke=Invoke(_json({"inputs": _rows(1, WIDTH - 1)})),
         grpc=Grpc(_proto(ZEROS, [1, WIDTH - 1]), "INVALID_ARGUMENT")),
    Case("no batch dimension",
         http=Http(_json({"inputs": [0.0] * WIDTH}), JSON, 400),
         invoke=Invoke(_json({"inputs": [0.0] * WIDTH})),
         grpc=Grpc(_proto(ZEROS, [WIDTH]), "INVALID_ARGUMENT")),
    Case("empty batch",
         http=Http(_json({"inputs": []}), JSON, 400),
         invoke=Invoke(_json({"inputs": []})),
         grpc=Grpc(_proto(b"", [0, WIDTH]), "INVALID_ARGUMENT")),
    Case("NaN",
         http=Http(b'{"inputs": [[' + b", ".join([b"NaN"] * WIDTH) + b"]]}", JSON, 400),
         invoke=Invoke(_event(NAN, [1, WIDTH])),
         grpc=Grpc(_proto(NAN, [1, WIDTH]), "INVALID_ARGUMENT")),
    Case("infinity",
         http=Http(_json({"inputs": _rows(1, value=1e39)}), JSON, 400),  # inf as float32
         invoke=Invoke(_event(INF, [1, WIDTH])),
         grpc=Grpc(_proto(INF, [1, WIDTH]), "INVALID_ARGUMENT")),
    Case("finite, but too large for the model",  # it would answer NaN probabilities
         http=Http(_json({"inputs": _rows(1, value=3e38)}), JSON, 400),
         invoke=Invoke(_json({"inputs": _rows(1, value=3e38)})),
         grpc=Grpc(_proto(_tensor(np.full((1, WIDTH), 3e38)), [1, WIDTH]),
                   "INVALID_ARGUMENT")),
    Case("deeply nested",
         http=Http(NESTED, JSON, 400),
         invoke=Invoke(NESTED, 400, "InvalidRequestContentException")),
    Case("unicode junk",
         http=Http('{"inputs": [["\u2603\u0000\U0001f4a9"]]}'.encode(), JSON, 400),
         # A raw NUL in a JSON string is no JSON: the Invoke API refuses it itself.
         invoke=Invoke('{"inputs": [["\u2603\u0000\U0001f4a9"]]}'.encode(), 400,
                       "InvalidRequestContentException")),
    Case("wrong content type",
         http=Http(b"inputs=1", {"Content-Type": "text/plain"}, 415)),
    Case("no content type",
         http=Http(_json({"inputs": _rows(1)}), {}, 415)),
    Case("truncated binary",
         http=Http(ZEROS[:-3], {**BINARY, "X-Shape": f"1,{WIDTH}"}, 400),
         invoke=Invoke(_event(ZEROS[:-3], [1, WIDTH])),
         grpc=Grpc(_proto(ZEROS[:-3], [1, WIDTH]), "INVALID_ARGUMENT")),
    Case("binary without a shape",
         http=Http(ZEROS, BINARY, 400),
         invoke=Invoke(_json({"data": base64.b64encode(ZEROS).decode()}))),
    Case("unreadable shape",
         http=Http(ZEROS, {**BINARY, "X-Shape": "one,sixty-four"}, 400),
         invoke=Invoke(_event(ZEROS, ["one", "sixty-four"]))),
    Case("negative dimension",
         http=Http(b"", {**BINARY, "X-Shape": f"-1,{WIDTH}"}, 400),
         invoke=Invoke(_event(b"", [-1, WIDTH])),
         grpc=Grpc(_proto(b"", [-1, WIDTH]), "INVALID_ARGUMENT")),
    Case("wrong dtype",
         http=Http(ZEROS, {**BINARY, "X-Shape": f"1,{WIDTH}", "X-Dtype": "float64"}, 400),
         invoke=Invoke(_event(ZEROS, [1, WIDTH], "float64")),
         grpc=Grpc(_proto(ZEROS, [1, WIDTH], predict_pb2.FLOAT64), "INVALID_ARGUMENT")),
    Case("more data than the shape says",
         http=Http(ZEROS + ZEROS, {**BINARY, "X-Shape": f"1,{WIDTH}"}, 400),
         invoke=Invoke(_event(ZEROS + ZEROS, [1, WIDTH])),
         grpc=Grpc(_proto(ZEROS + ZEROS, [1, WIDTH]), "INVALID_ARGUMENT")),
    Case("wrong rank",
         http=Http(ZEROS, {**BINARY, "X-Shape": "1,8,8"}, 400),
         invoke=Invoke(_event(ZEROS, [1, 8, 8])),
         grpc=Grpc(_proto(ZEROS, [1, 8, 8]), "INVALID_ARGUMENT")),
    Case("absurd dimension",
         http=Http(ZEROS, {**BINARY, "X-Shape": f"1,{2**62}"}, 400),
         invoke=Invoke(_event(ZEROS, [1, 2**62])),
         grpc=Grpc(_proto(ZEROS, [1, 2**62]), "INVALID_ARGUMENT")),
    Case("zero-width rows",
         http=Http(b"", {**BINARY, "X-Shape": "1,0"}, 400),
         invoke=Invoke(_event(b"", [1, 0])),
         grpc=Grpc(_proto(b"", [1, 0]), "INVALID_ARGUMENT")),
    Case("unknown dtype",
         http=Http(ZEROS, {**BINARY, "X-Shape": f"1,{WIDTH}", "X-Dtype": "complex256"}, 400),
         invoke=Invoke(_event(ZEROS, [1, WIDTH], 7)),
         grpc=Grpc(_proto(ZEROS, [1, WIDTH], 99), "INVALID_ARGUMENT")),
    Case("not base64",
         invoke=Invoke(_json({"data": "!!not base64!!", "shape": [1, WIDTH],
                              "dtype": "float32"}))),
    Case("batch over the limit",
         http=Http(_json({"inputs": _rows(OVER_BATCH)}), JSON, 413),
         invoke=Invoke(_json({"inputs": _rows(OVER_BATCH)})),
         grpc=Grpc(_proto(_tensor(np.zeros((OVER_BATCH, WIDTH))), [OVER_BATCH, WIDTH]),
                   "RESOURCE_EXHAUSTED")),
    Case("huge batch claimed by the shape",
         http=Http(ZEROS, {**BINARY, "X-Shape": f"1000000000,{WIDTH}"}, 413),
         invoke=Invoke(_event(ZEROS, [1_000_000_000, WIDTH])),
         grpc=Grpc(_proto(ZEROS, [1_000_000_000, WIDTH]), "RESOURCE_EXHAUSTED")),
    Case("body over the limit",
         http=Http(b" " * (LIMITS.max_body_bytes + 1), JSON, 413),
         invoke=Invoke(b" " * (INVOKE_MAX_BYTES + 1), 413, "RequestTooLargeException"),
         grpc=Grpc(_proto(b"\0" * LIMITS.max_body_bytes, [LIMITS.max_body_bytes // 4]),
                   "RESOURCE_EXHAUSTED")),
)


def cases(way: str) -> list[Case]:
    """The cases that ``way`` ("http", "invoke" or "grpc") can express."""
    return [c for c in CORPUS if getattr(c, way) is not None]
