"""A fake target with a fixed, known service time, for deterministic tests.

It serves nothing over the network and loads no model: its "predictions" are the
in-process ones and its load is simulated (:class:`harness.loadgen.SimulatedLoadGenerator`),
so tests of the runner, statistics and reports are exact and fast. It never stands in for
a real target in an integration test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from targets.base import LoadSpec, TargetBase
from targets.bundle import Bundle, get_bundle, serve_batch

if TYPE_CHECKING:
    import numpy as np

    from targets.bundle import Prediction


class FakeTarget(TargetBase):
    def __init__(self, bundle: str, name: str = "fake", service_time_s: float = 0.002,
                 capacity: int = 1) -> None:
        self.name = name
        self.bundle_name = bundle
        self.service_time_s = service_time_s
        self.capacity = capacity
        self._bundle: Bundle | None = None

    def start(self) -> None:
        bundle = get_bundle(self.bundle_name)
        bundle.load()
        self._bundle = bundle

    def health(self) -> bool:
        return self._bundle is not None

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        assert self._bundle is not None, "start() first"
        return serve_batch(self._bundle, batch)

    def describe(self) -> dict[str, Any]:
        return {"runtime": "simulated", "server": "fake: fixed service time",
                "service_time_s": self.service_time_s, "capacity": self.capacity,
                "cpus": [], "startup_s": 0.0}

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        return {"protocol": "simulated", "service_time_s": self.service_time_s,
                "capacity": self.capacity, "cpus": []}

    def stop(self) -> None:
        self._bundle = None
