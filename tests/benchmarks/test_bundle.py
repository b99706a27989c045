"""The bundle's own steps, per call at batch 1: preprocess, predict (the model) and
postprocess, for each built-in bundle, on one torch thread (each serving worker's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("step", ["preprocess", "predict", "postprocess"])
@pytest.mark.parametrize("bundle_name", ["digits", "vision"])
def test_step(benchmark: Any, request: pytest.FixtureRequest, bundle_name: str,
              step: str) -> None:
    bundle = request.getfixturevalue(bundle_name)
    batch = bundle.example_requests()[0]
    benchmark.group = f"bundle steps ({bundle_name}, batch 1)"
    with torch.inference_mode():
        pre = bundle.preprocess(batch)
        raw = bundle.predict(pre)
        call = {"preprocess": lambda: bundle.preprocess(batch),
                "predict": lambda: bundle.predict(pre),
                "postprocess": lambda: bundle.postprocess(raw)}[step]
        out = benchmark(call)
    assert out is not None
