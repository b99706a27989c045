"""Locust user classes, one module per protocol. Import only inside the load generator."""

from __future__ import annotations

import base64
from typing import Any


def build_user(spec: dict[str, Any], control: Any) -> Any:
    """The Locust user class for a served target (the same class name in every process,
    as Locust's master and workers match users by name)."""
    if spec["protocol"] == "http":
        from harness.loadgen.swarm.users import http

        payloads = [(base64.b64decode(p["body_b64"]), p["headers"]) for p in spec["payloads"]]
        return http.make_user(spec, payloads, control)
    if spec["protocol"] == "lambda-invoke":
        from harness.loadgen.swarm.users import lambdainvoke

        return lambdainvoke.make_user(spec, control)
    from harness.loadgen.swarm.users import grpc as grpc_user

    return grpc_user.make_user(spec, control)

