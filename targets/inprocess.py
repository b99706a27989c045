"""The in-process target: the application calls the bundle directly, no serving layer.

For parity the orchestrator calls the bundle here. Under load the model runs inside the
load generator's process (that *is* the deployment: the model embedded in the
application), in real OS threads pinned to the target CPUs; see
:mod:`scenarios.users.inprocess`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from targets.base import LoadSpec, TargetBase
from targets.bundle import Bundle, get_bundle, serve_batch

if TYPE_CHECKING:
    import numpy as np

    from targets.bundle import Prediction


class InProcessTarget(TargetBase):
    name = "inprocess"

    def __init__(self, bundle: str, cpus: list[int]) -> None:
        self.bundle_name = bundle
        self.cpus = list(cpus)
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
        return {
            "runtime": "in the load generator's process",
            "server": "none: direct call to the bundle",
            "cpus": self.cpus,
            "workers": 1,
            "threads_per_worker": len(self.cpus),
            "torch_threads_per_worker": 1,
            "encoding": "none (numpy arrays)",
            "memory_note": "the model shares its process with the load generator, so memory "
                           "figures include Locust's own (see rss_before_model_mb)",
        }

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        return {"protocol": "inprocess", "bundle": self.bundle_name,
                "threads": len(self.cpus), "cpus": self.cpus}

    def stop(self) -> None:
        self._bundle = None
