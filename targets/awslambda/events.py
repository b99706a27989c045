"""Decoding the Lambda handler's two kinds of events into a batch, apart from the handler
module (whose import is Lambda's Init phase and loads the model), so the property tests
(tests/unit/test_decoding_properties.py) call the very code the handler runs.

Both raise :class:`targets.errors.RequestError` (400/413/415 and a message) for anything
that is not a servable batch, as :mod:`targets.wire.codec` does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from targets.errors import RequestError
from targets.wire import codec

#: The fields of a direct invocation's binary event.
TENSOR_FIELDS = ("data", "shape", "dtype")


class Headers:
    """Case-insensitive lookup over an event's headers (Function URLs lower-case them)."""

    def __init__(self, headers: Any) -> None:
        items = headers.items() if isinstance(headers, dict) else ()
        self._headers = {str(k).lower(): v for k, v in items}

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._headers.get(name.lower(), default)
        return value if value is None or isinstance(value, str) else str(value)


def decode_direct_event(event: Any, input_shape: tuple[int, ...],
                        limits: codec.Limits) -> np.ndarray:
    """A direct invocation's payload: ``{"inputs": [[...]]}``, or ``{"data": "<base64
    float32>", "shape": [...], "dtype": "float32"}``."""
    if isinstance(event, dict) and "data" in event:
        extra = sorted(str(k) for k in event if k not in TENSOR_FIELDS)
        if extra:
            raise RequestError(400, f"unknown field {extra[0][:80]!r}: a binary event "
                                    'holds "data", "shape" and "dtype"')
        if str(event.get("dtype", "float32")).lower() != "float32":
            raise RequestError(400, f"dtype {str(event.get('dtype'))[:40]!r} is not "
                                    "supported; send float32")
        shape = event.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise RequestError(400, '"shape" must be a list of integers')
        try:
            data = base64.b64decode(event["data"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise RequestError(400, '"data" must be base64 of float32 bytes') from exc
        return codec.decode_tensor(data, tuple(shape), input_shape, limits)
    return codec.decode_document(event, input_shape, limits)


def decode_url_event(event: dict[str, Any], input_shape: tuple[int, ...],
                     limits: codec.Limits) -> np.ndarray:
    """A Function URL event's (payload format 2.0) body: as the Flask target's, base64
    when ``isBase64Encoded``."""
    headers = Headers(event.get("headers"))
    text = event.get("body") or ""
    if not isinstance(text, str):
        raise RequestError(400, "the event's body is not a string")
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(400, "body is not valid base64") from exc
    else:  # lone surrogates pass through, and the codec refuses them as invalid UTF-8
        body = text.encode("utf-8", "surrogatepass")
    return codec.decode_request(headers.get("content-type"), body, headers, input_shape, limits)
