"""One request, answered: each target's round trip at one request in flight, on
``digits`` (where serving overhead is most of the time). The server runs on the target
CPUs; the client here, on the load generator's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from harness.cpus import CpuPlan
from targets.awslambda.target import LambdaTarget
from targets.bundles.protocol import serve_batch
from targets.flask.target import FlaskTarget
from targets.grpc.target import GrpcTarget

pytestmark = pytest.mark.benchmark(group="round trip (digits, batch 1)")


def test_inprocess(benchmark: Any, digits, cpus: CpuPlan) -> None:  # type: ignore[no-untyped-def]
    """The model called directly, on the target CPUs: the floor every deployment adds to."""
    example = digits.example_requests()[0]
    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, cpus.target)
    torch.set_num_threads(len(cpus.target))
    try:
        result = benchmark(serve_batch, digits, example)
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)
    assert len(result) == 1


@pytest.fixture(scope="module", params=["flask-json", "flask-binary", "grpc", "lambda"])
def served(request: pytest.FixtureRequest, cpus: CpuPlan,
           digits) -> Iterator[Any]:  # type: ignore[no-untyped-def]

    kind, _, encoding = request.param.partition("-")
    classes = {"flask": FlaskTarget, "grpc": GrpcTarget, "lambda": LambdaTarget}
    with classes[kind]("digits", list(cpus.target), encoding or "json") as target:
        target.predict(digits.example_requests()[0])  # connected, warm
        yield target


def test_served(benchmark: Any, served: Any, digits) -> None:  # type: ignore[no-untyped-def]
    example = digits.example_requests()[0]
    benchmark.extra_info["encoding"] = served.encoding
    result = benchmark(served.predict, example)
    assert len(result) == 1
