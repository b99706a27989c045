"""The objective a deployment is judged against (``--slo``, the expected traffic) and
whether a stage meets it: latency bounds, the error budget, goodput.

Computed from ``run.json`` alone (see :mod:`reports.decision` for the rules as the report
states them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reports.format import fmt_rps
from reports.pricing import effective_prices
from reports.schema import RunDoc, StageResult

DEFAULT_SLO_P99_MS = 100.0
#: The share of requests that may fail (error status, timeout, no answer) while a
#: deployment still meets the objective, unless --slo errors=... says otherwise. Failed
#: requests are not in the latency percentiles (they have no answer to time): they count
#: here, beside them.
DEFAULT_ERROR_BUDGET = 0.001
DEFAULT_MONTHLY_REQUESTS = 10_000_000
LATENCY_KEYS = ("p50", "p90", "p95", "p99")


@dataclass(frozen=True)
class Objective:
    #: Latency bounds in ms, e.g. {"p99": 100.0}.
    latency_ms: dict[str, float]
    #: Peak throughput the deployment must serve (req/s), if given.
    rps: float | None
    monthly_requests: float
    #: Which parts were not given and took their defaults.
    defaulted: tuple[str, ...]
    #: Hours in a month, as the prices count them.
    hours_per_month: float = 730.0
    #: The share of requests that may fail (see DEFAULT_ERROR_BUDGET).
    error_budget: float = DEFAULT_ERROR_BUDGET

    def describe(self) -> str:
        bounds = ", ".join(f"{k} <= {v:g} ms" for k, v in self.latency_ms.items())
        return bounds + (f" at {fmt_rps(self.rps)} req/s" if self.rps else "")

    @property
    def average_rps(self) -> float:
        return self.monthly_requests / (self.hours_per_month * 3600.0)


def latency_bounds(slo: dict[str, float] | None, slo_p99_ms: float | None
                   ) -> tuple[dict[str, float], bool]:
    """The objective's latency bounds: --slo's, else the scenario's ``slo_p99_ms``, else
    p99 <= DEFAULT_SLO_P99_MS; and whether they are that default."""
    latency = {k: float(v) for k, v in (slo or {}).items() if k in LATENCY_KEYS}
    if latency:
        return latency, False
    return {"p99": float(slo_p99_ms or DEFAULT_SLO_P99_MS)}, not slo_p99_ms


def sweep_p99_ms(slo: dict[str, float] | None, slo_p99_ms: float | None) -> float | None:
    """The p99 a run's sweep stops past and its ``rate_fractions`` take the capacity
    within: the one given (--slo, the scenario's), else the p99 bound the decision
    applies (:func:`latency_bounds`), so the capacity measured is one it would accept.
    None when the objective bounds other percentiles only."""
    if slo_p99_ms is not None:
        return slo_p99_ms
    return latency_bounds(slo, None)[0].get("p99")


def objective(run: RunDoc) -> Objective:
    meta = run["metadata"]
    slo = dict(meta.get("slo") or {})
    latency, default = latency_bounds(slo, meta.get("slo_p99_ms"))
    defaulted = ["latency"] if default else []
    volume = meta.get("monthly_requests")
    if volume is None:
        volume = DEFAULT_MONTHLY_REQUESTS
        defaulted.append("volume")
    hours = float(effective_prices(run).get("hours_per_month", 730.0))
    budget = slo.get("errors")
    if budget is None:
        budget = DEFAULT_ERROR_BUDGET
        defaulted.append("errors")
    return Objective(latency, slo.get("rps"), float(volume), tuple(defaulted), hours,
                     float(budget))


def latency_ok(stage: StageResult, bounds: dict[str, float]) -> bool:
    return meets_bounds(stage["latency_ms"], bounds)


def meets_bounds(lat: Mapping[str, Any] | None, bounds: dict[str, float]) -> bool:
    """Whether a latency summary meets every bound."""
    return lat is not None and all(lat.get(k) is not None and lat[k] <= v
                                   for k, v in bounds.items())


def errors_ok(stage: StageResult, obj: Objective) -> bool:
    return float(stage["error_rate"]) <= obj.error_budget


def goodput(stage: StageResult, bounds: dict[str, float]) -> float | None:
    """Successful requests within the latency objective, per second (inference-perf's
    goodput): the stage's req/s times the share of its successful requests at or under
    the tightest per-request bound, read from its latency distribution (interpolated
    between its stored points). None without a distribution."""
    cdf = stage.get("latency_cdf")
    if not cdf or not bounds:
        return None
    limit = min(bounds.values())
    share = float(np.interp(limit, cdf["ms"], cdf["p"], left=0.0, right=1.0))
    return float(stage["rps"]) * share
