"""The HTTP prediction API's OpenAPI 3.0 description, served at ``GET /openapi.json`` by
the flask and fastapi targets (the same hand-written document: FastAPI's generated one
could not describe the binary body).

Written from the same facts the server checks (the bundle's input shape, the request
limits), so a client generator or a fuzzer such as schemathesis sees exactly what is
accepted: JSON ``{"inputs": [...]}`` of finite float32 numbers, or raw float32 bytes with
``X-Shape``; and what comes back, including every client error's JSON body.
"""

from __future__ import annotations

from typing import Any

from targets.wire import codec

#: The largest finite float32: larger JSON numbers become infinity, which is refused.
FLOAT32_MAX = 3.4028234663852886e38


def _rows(input_shape: tuple[int, ...]) -> dict[str, Any]:
    """One example: nested arrays of exactly ``input_shape``."""
    schema: dict[str, Any] = {"type": "number", "minimum": -FLOAT32_MAX,
                              "maximum": FLOAT32_MAX}
    for size in reversed(input_shape):
        schema = {"type": "array", "items": schema, "minItems": size, "maxItems": size}
    return schema


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {codec.JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document(bundle: str, input_shape: tuple[int, ...], limits: codec.Limits,
             server: str = "flask") -> dict[str, Any]:
    """The description of ``server``'s target (``flask``, ``fastapi``: its title only)."""
    shape = ",".join(str(d) for d in input_shape)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"deploybench {server} target ({bundle})", "version": "1",
                 "description": "Predictions from one model bundle. Every error is JSON "
                                "{error, status}; nothing a client sends gets a 5xx."},
        "paths": {
            "/predict": {"post": {
                "operationId": "predict",
                "summary": "Predict a batch",
                "parameters": [
                    {"name": codec.SHAPE_HEADER, "in": "header", "required": False,
                     "description": f"binary bodies only: the batch's shape, e.g. 1,{shape}",
                     "schema": {"type": "string", "pattern": r"^[0-9]+(,[0-9]+)*$"}},
                    {"name": codec.DTYPE_HEADER, "in": "header", "required": False,
                     "description": "binary bodies only: the element type",
                     "schema": {"type": "string", "enum": ["float32"]}},
                ],
                "requestBody": {"required": True, "content": {
                    codec.JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Request"}},
                    codec.BINARY_TYPE: {"schema": {"type": "string", "format": "binary"}},
                }},
                "responses": {
                    "200": {"description": "one prediction per example",
                            "content": {codec.JSON_TYPE: {"schema": {
                                "$ref": "#/components/schemas/Predictions"}}}},
                    "400": _error("malformed input (the message names the problem)"),
                    "413": _error(f"a body over {limits.max_body_bytes} bytes or a batch "
                                  f"over {limits.max_batch}"),
                    "415": _error("a content type other than JSON or octet-stream"),
                },
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "this description",
                "responses": {"200": {"description": "OpenAPI 3.0", "content": {
                    codec.JSON_TYPE: {"schema": {"type": "object"}}}}},
            }},
            "/healthz": {"get": {
                "operationId": "health",
                "summary": "200 once the model is loaded",
                "responses": {"200": {"description": "ready", "content": {codec.JSON_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Health"}}}}},
            }},
        },
        "components": {"schemas": {
            "Request": {
                "type": "object", "required": ["inputs"], "additionalProperties": False,
                "properties": {"inputs": {"type": "array", "minItems": 1,
                                          "maxItems": limits.max_batch,
                                          "items": _rows(input_shape)}},
            },
            "Predictions": {
                "type": "object", "required": ["predictions"],
                "properties": {"predictions": {"type": "array", "items": {
                    "type": "object", "required": ["label", "probabilities"],
                    "properties": {"label": {"type": "integer"},
                                   "probabilities": {"type": "array",
                                                     "items": {"type": "number"}}}}}},
            },
            "Error": {
                "type": "object", "required": ["error", "status"],
                "properties": {"error": {"type": "string"},
                               "status": {"type": "integer", "minimum": 400,
                                          "maximum": 499}},
            },
            "Health": {
                "type": "object", "required": ["status", "bundle", "pid"],
                "properties": {"status": {"type": "string"}, "bundle": {"type": "string"},
                               "pid": {"type": "integer"}},
            },
        }},
    }
