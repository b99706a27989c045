"""Latency percentiles from raw samples, the nearest-rank way.

Percentiles use the **nearest-rank** definition: the p-th percentile of n sorted samples
is the value at rank ceil(p * n). It is always an observed latency, so
min <= p50 <= p99 <= max holds by construction, and it is the definition HdrHistogram,
wrk and most load generators report (Locust's bucketed percentiles are not: they can
exceed the maximum). With fewer than 1/(1-p) samples the p-th percentile is the maximum.

p99.9 is reported only from enough samples to trust it (:mod:`.validity`: 6,636); with
fewer it is None and shown as such, never as a disguised maximum.

Pure numpy, below everything that summarises a stage (:mod:`.stats`, the sweep, the
timeline, the serverless figures).
"""

from __future__ import annotations

import math

import numpy as np

from harness.loadgen.analysis.validity import min_requests
from reports.stageblocks import LatencyCdf, LatencySummary

#: The percentiles every stage reports, as (key, fraction).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999),
)


def nearest_rank(sorted_values: np.ndarray, fraction: float) -> float:
    """The nearest-rank percentile of an ascending array (``fraction`` in (0, 1])."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no samples")
    # Round away float noise first: 0.999 * 1000 is 999.0000000000001, whose ceiling
    # would pick the maximum instead of the 999th value.
    rank = max(1, math.ceil(round(fraction * n, 9)))
    return float(sorted_values[rank - 1])


#: Where a stage's latency distribution is sampled for the report's CDF chart: every
#: percent, then the tail (nearest rank, as every other percentile here).
CDF_FRACTIONS: tuple[float, ...] = (*(i / 100 for i in range(1, 100)), 0.995, 0.999, 1.0)


def latency_cdf(latency_ms: np.ndarray) -> LatencyCdf | None:
    """The distribution as ``{"p": fractions, "ms": latency at each}``, min first."""
    if len(latency_ms) == 0:
        return None
    ordered = np.sort(latency_ms)
    return {"p": [0.0, *CDF_FRACTIONS],
            "ms": [float(ordered[0]), *(nearest_rank(ordered, f) for f in CDF_FRACTIONS)]}


def summarize_latency(latency_ms: np.ndarray) -> LatencySummary | None:
    if len(latency_ms) == 0:
        return None
    ordered = np.sort(latency_ms)
    summary: LatencySummary = {key: nearest_rank(ordered, f) for key, f in PERCENTILES}  # type: ignore[assignment]
    if len(ordered) < min_requests(0.999):
        summary["p999"] = None
    summary["min"] = float(ordered[0])
    summary["max"] = float(ordered[-1])
    summary["mean"] = float(ordered.mean())
    return summary
