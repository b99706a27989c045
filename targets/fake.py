"""A fake target with a fixed, known service time, for deterministic tests.

It answers parity with the in-process predictions and its load is simulated
(:class:`harness.loadgen.SimulatedLoadGenerator`), so tests of the runner, statistics and
reports are exact and fast. It never stands in for a real target in an integration test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from targets.base import LoadSpec
from targets.inprocess.target import InProcessTarget

if TYPE_CHECKING:
    import numpy as np


class FakeTarget(InProcessTarget):
    #: Its load is simulated, so parity is checked by the orchestrator as for served targets.
    parity_in_load_generator = False

    def __init__(self, bundle: str, name: str = "fake", service_time_s: float = 0.002,
                 capacity: int = 1) -> None:
        super().__init__(bundle, cpus=[])
        self.name = name
        self.service_time_s = service_time_s
        self.capacity = capacity

    def describe(self) -> dict[str, Any]:
        return {"runtime": "simulated", "server": "fake: fixed service time",
                "service_time_s": self.service_time_s, "capacity": self.capacity,
                "cpus": [], "startup_s": 0.0}

    #: A fixed, known cold start.
    cold_start_s = 0.5

    def cold_start(self, example: np.ndarray) -> dict[str, Any]:
        return {"total_s": self.cold_start_s, "definition": "simulated"}

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        return {"protocol": "simulated", "service_time_s": self.service_time_s,
                "capacity": self.capacity, "cpus": []}
