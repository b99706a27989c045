"""The null HTTP target as the orchestrator sees it: the null server process on loopback.

Served like Flask (same arguments, same load spec, same keep-alive client for health and
parity), but the server answers the null bundle's prediction for one row to every
``POST /predict`` without reading what was sent. The null bundle's example requests are
single rows, so parity holds request for request; :meth:`NullHttpTarget.predict` sends a
batch of several rows one row per request, so it still returns one prediction per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from targets.errors import BundleError
from targets.nullhttp.server import NULL_BUNDLE
from targets.served import HttpServedTarget

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction


@dataclass(frozen=True)
class NullHttpOptions:
    """A controlled target for tests: an added delay, and a stall (see the server)."""

    delay_ms: float = 0.0
    stall_after_s: float | None = None
    stall_s: float = 0.0


class NullHttpTarget(HttpServedTarget):
    """``NullHttpTarget("null", cpus, "json", port=..., workers=..., log_path=...)``."""

    name = "null-http"
    server_module = "targets.nullhttp"
    server_kind = "null HTTP/1.1 server (asyncio, keep-alive): fixed answer, no model"
    #: Each worker is one event loop on one thread.
    default_threads = 1
    health_path = "/health"

    def __init__(self, bundle: str, *args: Any, delay_ms: float = 0.0,
                 stall_after_s: float | None = None, stall_s: float = 0.0,
                 **kwargs: Any) -> None:
        """``delay_ms``/``stall_after_s``/``stall_s``: a controlled target for tests (see
        :mod:`targets.nullhttp.server`)."""
        self.delay_ms, self.stall_after_s, self.stall_s = delay_ms, stall_after_s, stall_s
        if bundle != NULL_BUNDLE:
            raise BundleError(
                f"the null-http target answers only the null bundle (asked for {bundle!r}). "
                f"Run it with bundle {NULL_BUNDLE!r}"
            )
        super().__init__(bundle, *args, **kwargs)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        """One request per row: the server answers one prediction per request."""
        predictions: list[Prediction] = []
        for row in range(len(batch)):
            predictions += super().predict(batch[row : row + 1])
        return predictions

    def server_arguments(self) -> list[str]:
        out = [*super().server_arguments(), "--delay-ms", str(self.delay_ms)]
        if self.stall_after_s is not None:
            out += ["--stall-after-s", str(self.stall_after_s)]
        if self.stall_s > 0:
            out += ["--stall-s", str(self.stall_s)]
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "torch_threads_per_worker": None,
            "calibration": True,
            "delay_ms": self.delay_ms, "stall_after_s": self.stall_after_s,
            "stall_s": self.stall_s,
            "answers": "the null bundle's fixed prediction for one row, prebuilt; request "
                       "bodies are read and discarded, never decoded",
        }
