"""A deployment that already runs elsewhere (``--endpoint NAME=URL``): on Kubernetes, in a
container started by hand, behind a load balancer. deploybench starts and stops nothing;
it checks health and parity and drives it with the same Locust users, through the same
protocol client as a deployment it starts (:mod:`targets.registry` picks it by the URL).

What runs on another machine cannot be measured from here: its CPU and memory figures
are absent (not zero), and the report says so. Its cold start cannot be timed either
(a Lambda function's cold starts during the load are counted from its REPORT lines).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from targets.base import PredictClient, TargetBase
from targets.errors import TargetError

if TYPE_CHECKING:
    import numpy as np

    from targets.base import LoadSpec
    from targets.bundles.protocol import Prediction

#: How long an endpoint may take to answer its first health check.
HEALTH_TIMEOUT_S = 30.0


class ExternalTarget(TargetBase):
    """``ExternalTarget("k8s", "http://10.0.0.5:8000", client)``: nothing to start, so
    'start' is waiting for the client's health check."""

    def __init__(self, name: str, url: str, client: PredictClient) -> None:
        self.name = name
        self.url = url
        self.client = client
        self.startup_s: float | None = None

    @property
    def encoding(self) -> str:
        return self.client.encoding

    def start(self) -> None:
        self.client.open()
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not self.health():
            if time.monotonic() > deadline:
                raise TargetError(f"endpoint {self.name} ({self.url}) did not answer its health "
                                  f"check within {HEALTH_TIMEOUT_S:.0f} s")
            time.sleep(0.2)

    def health(self) -> bool:
        return self.client.probe().ok

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        return self.client.predict(batch)

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        return {**self.client.load_spec(examples), "cpus": [], "watch_pids": []}

    def platform_records(self) -> list[dict[str, Any]] | None:
        return self.client.platform_records()

    def final_facts(self) -> dict[str, Any]:
        return self.client.final_facts()

    def describe(self) -> dict[str, Any]:
        return {"runtime": "external endpoint (not started or measured by deploybench)",
                "server": "unknown: runs elsewhere", "address": self.url, "cpus": [],
                "workers": None, "threads_per_worker": None, "encoding": self.encoding,
                "external": True, **self.client.facts()}

    def stop(self) -> None:
        self.client.close()
