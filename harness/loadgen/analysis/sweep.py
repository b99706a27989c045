"""Model Analyzer's stopping rule for concurrency sweeps, and the capacity it finds.

Pure functions of a stage's quick figures as the load generator computes them
(:func:`stage_figures`: ``rps``, ``p99_ms``, ``error_rate``, and the ``valid`` and
``loadgen_busy`` flags), so they are tested without a load generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from harness.loadgen.analysis.latency import nearest_rank
from harness.loadgen.protocol import QuickFigures

#: A stage's figures: QuickFigures, or a simulated stage's plain dict of the same keys.
Figures = TypeVar("Figures", bound=Mapping[str, Any])


def stage_figures(start_s: np.ndarray, latency_ms: np.ndarray, ok: np.ndarray,
                  window_start: float, window_end: float) -> QuickFigures:
    """Goodput, p99 and error rate of the requests sent in the window."""
    sent = (start_s >= window_start) & (start_s < window_end)
    good = sent & ok
    span = window_end - window_start
    n = int(sent.sum())
    return {
        "requests": n,
        "ok_requests": int(good.sum()),
        "rps": float(good.sum()) / span if span > 0 else 0.0,
        "p99_ms": nearest_rank(np.sort(latency_ms[good]), 0.99) if good.any() else None,
        "error_rate": (n - int(good.sum())) / n if n else 0.0,
    }


def meets(stage: Mapping[str, Any], slo_p99_ms: float | None, max_error_rate: float) -> bool:
    """A VALID stage within the error bound and the SLO: one a capacity may come from."""
    p99 = stage.get("p99_ms")
    return (stage.get("valid", True) and p99 is not None
            and stage.get("error_rate", 0.0) <= max_error_rate
            and (slo_p99_ms is None or p99 <= slo_p99_ms))


def sweep_should_stop(stages: Sequence[Mapping[str, Any]], min_gain: float, patience: int,
                      slo_p99_ms: float | None, max_error_rate: float) -> str | None:
    """Why to stop raising concurrency after the last of ``stages`` (None: go on).

    Model Analyzer stops when the best of the last ``patience`` results is at most
    ``min_gain`` (5%) above the first of them (``THROUGHPUT_MINIMUM_GAIN``,
    ``THROUGHPUT_MINIMUM_CONSECUTIVE_*_TRIES = 4``), or when the latency budget is passed.
    It also stops once the load generator's core is saturated (``loadgen_busy``): more
    users would measure the load generator, not the target.
    """
    last = stages[-1]
    p99 = last.get("p99_ms")
    if slo_p99_ms is not None and p99 is not None and p99 > slo_p99_ms:
        return f"p99 {p99:.3g} ms passed the SLO of {slo_p99_ms:g} ms"
    if last.get("error_rate", 0.0) > max_error_rate:
        return f"error rate {last['error_rate']:.1%} above the bound ({max_error_rate:.1%})"
    if last.get("loadgen_busy"):
        return "the load generator's core was saturated: more users would measure it"
    if len(stages) >= patience:
        window = [s.get("rps", 0.0) for s in stages[-patience:]]
        if max(window[1:]) <= window[0] * (1.0 + min_gain):
            return (f"throughput gained at most {min_gain:.0%} over the last "
                    f"{patience - 1} steps ({window[0]:,.0f} -> {max(window[1:]):,.0f} req/s)")
    return None


def capacity(stages: Sequence[Figures], slo_p99_ms: float | None, max_error_rate: float
             ) -> Figures | None:
    """The VALID closed-loop stage with the highest throughput that meets the SLO."""
    good = [s for s in stages if meets(s, slo_p99_ms, max_error_rate)]
    return max(good, key=lambda s: s["rps"]) if good else None
