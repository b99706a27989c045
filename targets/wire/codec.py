"""Wire encodings for prediction requests and responses, shared by every served target.

Requests:

* **json** (``Content-Type: application/json``): ``{"inputs": [[...], ...]}``, a
  rectangular array of numbers of shape ``(batch, *input_shape)``.
* **binary** (``Content-Type: application/octet-stream``): the raw little-endian float32
  bytes of the batch in C order, with its shape in the ``X-Shape`` header (``"1,64"``);
  ``X-Dtype``, when sent, must be ``float32``.

Responses are JSON: ``{"predictions": [{"label": 3, "probabilities": [...]}, ...]}``.

Decoding validates everything a client controls and raises :class:`RequestError` with
the status a server must answer (400 malformed, 413 too large, 415 wrong content type),
so a bad request can never reach the model or become a 500.

JSON is parsed and written with orjson: on a ``digits`` request it decodes ~6x and
encodes the answer ~15x faster than the standard library (``tox -e bench``), which on
this model is a tenth of a served request's time. It is also stricter in ways the wire
wants: UTF-8 only, no ``NaN``/``Infinity`` literals, nesting at most 1,024 deep.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from targets.bundles import protocol
from targets.bundles.protocol import Prediction
from targets.errors import RequestError

# A number beyond float32's range becomes infinity in the cast (refused just after, as
# not finite): not worth a warning in a server's log for every such request.
warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning, __name__)

#: What a request body may be: the codec speaks each (a bundle names one as its default).
ENCODINGS = protocol.ENCODINGS
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
SHAPE_HEADER = "X-Shape"
DTYPE_HEADER = "X-Dtype"


@dataclass(frozen=True)
class Limits:
    """What a server accepts. Both are settings of every served target."""

    #: 16 MiB: a batch-8 ``vision`` request as binary (~4.8 MB) is served, as JSON (~25 MB)
    #: refused with 413.
    max_body_bytes: int = 16 * 1024 * 1024
    #: Larger batches get 413: they would hold a worker for a long time.
    max_batch: int = 64


DEFAULT_LIMITS = Limits()


_SHAPE = re.compile(r"-?[0-9]+(,-?[0-9]+)*")
#: Client-controlled text quoted in an error message is cut to this many characters.
QUOTE_LIMIT = 80


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "..."


def _quote(text: str) -> str:
    return repr(_cut(text))


def _expected(input_shape: tuple[int, ...]) -> str:
    return "(batch, " + ", ".join(str(d) for d in input_shape) + ")"


def _check_shape(shape: tuple[int, ...], input_shape: tuple[int, ...], limits: Limits) -> None:
    if len(shape) != len(input_shape) + 1 or tuple(shape[1:]) != tuple(input_shape):
        raise RequestError(400, f"inputs have shape {_cut(str(tuple(shape)))}; "
                                f"expected {_expected(input_shape)}")
    if shape[0] < 1:
        raise RequestError(400, f"inputs have an empty batch; expected "
                                f"{_expected(input_shape)}")
    if shape[0] > limits.max_batch:
        raise RequestError(413, f"batch of {shape[0]} exceeds the limit of {limits.max_batch}")


FLOAT32_MAX = float(np.finfo(np.float32).max)
NOT_FINITE = "inputs contain NaN or infinity (after conversion to float32)"


def _check_finite(batch: np.ndarray) -> np.ndarray:
    if not np.isfinite(batch).all():
        raise RequestError(400, NOT_FINITE)
    return batch


#: Every byte a body of nothing but numbers in the ``{"inputs": [[...]]}`` shape can hold
#: beside its one object and key: deleted from such a body, they leave ``{"inputs"}`` and
#: nothing else (no other string or object, no letter of true, false or null).
_NUMERIC_JSON = b"0123456789.eE+-[],: \t\r\n"
_SKELETON = b'{"inputs"}'


def decode_json(body: bytes, input_shape: tuple[int, ...], limits: Limits) -> np.ndarray:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # not UTF-8, not JSON, nested over 1,024 deep
        raise RequestError(400, f"body is not valid JSON: {_quote(str(exc))}") from exc
    if body.translate(None, _NUMERIC_JSON) == _SKELETON and type(doc) is dict \
            and type(inputs := doc.get("inputs")) is list:
        # The usual request, the short way (each call here costs several times its
        # micro-benchmark inside a server, where caches are cold): the body spells only
        # numbers, brackets and the one key, so the document holds lists and numbers and
        # nothing to refuse by type (no string, boolean or null). Limits, shape and
        # finiteness are still checked.
        if len(inputs) > limits.max_batch and type(inputs[0]) is list:
            raise RequestError(413, f"batch of {len(inputs)} exceeds the limit of "
                                    f"{limits.max_batch}")
        try:
            batch = np.asarray(inputs, dtype=np.float32)
        except (ValueError, TypeError) as exc:  # ragged, or nested too deeply for numpy
            raise RequestError(400, '"inputs" must be a rectangular array of numbers') \
                from exc
        except RuntimeWarning as exc:  # overflow in the cast, where warnings are errors
            raise RequestError(400, NOT_FINITE) from exc
        _check_shape(batch.shape, input_shape, limits)
        # One BLAS call: the sum of squares is finite when every value is; when it is not
        # (a value that is not finite, or squares beyond float32), each value is looked at.
        if not math.isfinite(np.vdot(batch, batch)):
            _check_finite(batch)
        return batch
    # Only a body that spells true or false can hold a boolean: others skip that walk.
    return decode_document(doc, input_shape, limits, may_hold_bools=b"true" in body
                           or b"false" in body)


def decode_document(doc: Any, input_shape: tuple[int, ...], limits: Limits,
                    may_hold_bools: bool = True) -> np.ndarray:
    """A parsed ``{"inputs": [[...]]}`` document, validated (JSON bodies, Lambda events)."""
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise RequestError(400, 'body must be a JSON object with an "inputs" array')
    extra = sorted(str(k) for k in doc if k != "inputs")
    if extra:  # a misspelt option must not be ignored silently
        raise RequestError(400, f"unknown field {_quote(extra[0])}: the body holds only "
                                '"inputs"')
    inputs = doc["inputs"]
    if not isinstance(inputs, list):
        raise RequestError(400, '"inputs" must be an array of arrays of numbers')
    if may_hold_bools and _has_bool(inputs):
        # numpy would quietly turn true/false beside numbers into 1/0.
        raise RequestError(400, '"inputs" must contain only numbers')
    return _batch(inputs, input_shape, limits, None)


def _batch(inputs: list[Any], input_shape: tuple[int, ...], limits: Limits,
           dtype: Any) -> np.ndarray:
    """A list of lists (of numbers, when ``dtype`` is given) as a validated float32 batch."""
    # Before the conversion, which costs memory; a flat list is no batch (400 below).
    if len(inputs) > limits.max_batch and inputs and isinstance(inputs[0], list):
        raise RequestError(413, f"batch of {len(inputs)} exceeds the limit of {limits.max_batch}")
    try:
        raw = np.asarray(inputs, dtype=dtype)
    except (ValueError, TypeError, RecursionError) as exc:  # ragged or absurdly deep nesting
        raise RequestError(400, '"inputs" must be a rectangular array of numbers') from exc
    # numpy turns strings into str arrays and None into objects: refused here.
    if raw.dtype.kind not in "iuf":
        raise RequestError(400, '"inputs" must contain only numbers')
    _check_shape(raw.shape, input_shape, limits)
    # Whole numbers are always finite in float32; a float64 batch is when its largest
    # magnitude is at most float32's (NaN compares False): checked before the cast, which
    # then needs no overflow guard.
    if raw.dtype.kind == "f" and not float(np.abs(raw).max()) <= FLOAT32_MAX:
        raise RequestError(400, NOT_FINITE)
    return raw.astype(np.float32)


def _has_bool(value: object) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, list) and any(_has_bool(v) for v in value)


def decode_binary(
    body: bytes, shape_header: str | None, dtype_header: str | None,
    input_shape: tuple[int, ...], limits: Limits,
) -> np.ndarray:
    _check_dtype(dtype_header)
    if not shape_header:
        raise RequestError(400, f"binary requests need an {SHAPE_HEADER} header, e.g. '1,64'")
    return decode_tensor(body, _parse_shape(shape_header), input_shape, limits)


def _check_dtype(dtype_header: str | None) -> None:
    if dtype_header is not None and dtype_header.strip().lower() != "float32":
        raise RequestError(400, f"{DTYPE_HEADER} {_quote(dtype_header)} is not supported; "
                                "send float32")


def _parse_shape(shape_header: str) -> tuple[int, ...]:
    # Digits only: int() alone would take "1_0" or "+1".
    compact = shape_header.replace(" ", "")
    if not _SHAPE.fullmatch(compact):
        raise RequestError(
            400, f"{SHAPE_HEADER} {_quote(shape_header)} is not a list of integers, e.g. 1,64")
    return tuple(int(part) for part in compact.split(","))


def decode_tensor(data: bytes, shape: tuple[int, ...], input_shape: tuple[int, ...],
                  limits: Limits) -> np.ndarray:
    """Raw little-endian float32 bytes of a ``shape`` batch, validated (binary HTTP, gRPC)."""
    if not shape:
        raise RequestError(400, f"the shape is missing; expected (batch, "
                                f"{', '.join(str(d) for d in input_shape)})")
    if any(dim < 0 for dim in shape):
        raise RequestError(400, f"shape {_cut(str(shape))} has a negative dimension")
    _check_shape(shape, input_shape, limits)
    expected = math.prod(shape) * 4
    if len(data) != expected:
        raise RequestError(
            400, f"the data has {len(data)} bytes; shape {shape} of float32 needs {expected}"
        )
    # A writable copy: torch warns on (and must not write into) the request's own buffer.
    batch = np.frombuffer(data, dtype="<f4").reshape(shape).copy()
    return _check_finite(batch)


def decode_request(
    content_type: str | None, body: bytes, headers: Any,
    input_shape: tuple[int, ...], limits: Limits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Decode and validate a request body into a float32 batch ``(B, *input_shape)``.

    ``headers`` is anything with a case-insensitive ``get`` (Flask's, a dict of lower-case keys).
    """
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"body of {len(body)} bytes exceeds {limits.max_body_bytes}")
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == JSON_TYPE:
        # Binary-only headers on a JSON body are unused, but not malformed: checked.
        _check_dtype(headers.get(DTYPE_HEADER))
        if headers.get(SHAPE_HEADER) is not None:
            _parse_shape(headers.get(SHAPE_HEADER))
        return decode_json(body, input_shape, limits)
    if mime == BINARY_TYPE:
        return decode_binary(
            body, headers.get(SHAPE_HEADER), headers.get(DTYPE_HEADER), input_shape, limits
        )
    raise RequestError(
        415, f"content type {_quote(content_type or '')} is not supported; "
             f"send {JSON_TYPE} or {BINARY_TYPE}"
    )


def encode_request(batch: np.ndarray, encoding: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers a client sends for ``batch`` in ``encoding``."""
    if encoding == "json":
        body = json.dumps({"inputs": batch.tolist()}, separators=(",", ":")).encode()
        return body, {"Content-Type": JSON_TYPE}
    if encoding == "binary":
        data = np.ascontiguousarray(batch, dtype="<f4")
        shape = ",".join(str(d) for d in data.shape)
        return data.tobytes(), {"Content-Type": BINARY_TYPE, SHAPE_HEADER: shape}
    raise ValueError(f"unknown encoding {encoding!r}; choose one of {ENCODINGS}")


def encode_predictions(predictions: list[Prediction]) -> bytes:
    return orjson.dumps({"predictions": [
        {"label": p.label, "probabilities": p.probabilities} for p in predictions
    ]})


def decode_predictions(body: bytes) -> list[Prediction]:
    doc = orjson.loads(body)
    return [
        Prediction(int(p["label"]), tuple(float(x) for x in p["probabilities"]))
        for p in doc["predictions"]
    ]


#: What a well-formed answer to one request holds: ``rows`` predictions (one per row of the
#: request), each with ``classes`` probabilities.
AnswerShape = tuple[int, int]


def answer_shape(predictions: list[Prediction]) -> AnswerShape:
    """The shape of a well-formed answer like ``predictions`` (a reference answer)."""
    return len(predictions), len(predictions[0].probabilities) if predictions else 0


def answer_problem(decode: Callable[[], list[Prediction]], shape: AnswerShape | None
                   ) -> str | None:
    """Why an answer is not a well-formed prediction, or None: ``decode()`` (the client's
    own decoding of it) fails, or its predictions are not one per row with a label among
    ``classes`` finite probabilities. The load users run this on every answer, as a real
    client decodes and uses every answer it gets (parity checked the content once)."""
    try:
        predictions = decode()
    except Exception as exc:  # any failure to decode is a malformed answer
        return f"an answer that does not decode ({type(exc).__name__}: {exc})"[:200]
    if shape is not None and len(predictions) != shape[0]:
        return f"{len(predictions)} predictions for a request of {shape[0]} row(s)"
    if not predictions:
        return "an answer with no predictions"
    for p in predictions:
        n = len(p.probabilities)
        if shape is not None and n != shape[1]:
            return f"a prediction of {n} probabilities where {shape[1]} were expected"
        if not 0 <= p.label < n:
            return f"label {p.label} outside its {n} probabilities"
        if not all(map(math.isfinite, p.probabilities)):
            return "a probability that is not a finite number"
    return None


def encode_error(status: int, message: str) -> bytes:
    return orjson.dumps({"error": message, "status": status})


#: Every good response starts with these bytes.
RESPONSE_PREFIX = b'{"predictions":'
