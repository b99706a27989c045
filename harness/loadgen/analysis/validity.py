"""When a stage's numbers can be trusted: stability windows and the VALID/INVALID verdict.

Every rule here has a source among the tools users compare deploybench with:

* **Stability** (perf_analyzer): measurement windows repeat until the last three agree
  within 10% on throughput and on latency (max/min <= 1.10); a window with no answers is
  never stable. Only those windows are reported. perf_analyzer stabilises on the mean
  latency by default; deploybench uses the median, which one slow request cannot move. In
  open loop the schedule sets the throughput (and Poisson arrivals alone make 3 windows of
  a few hundred requests differ by more than 10% about half the time), so there only the
  median latency must agree. Measurement stops once the windows agree *and* hold enough
  requests (below); a stage is unstable only when its windows disagreed.
* **Enough requests** (MLPerf LoadGen's early-stopping rule): the p-th percentile of n
  latencies is trusted when, with 99% confidence, at most one request above it could be
  explained by chance: the smallest n with P[Binomial(n, 1 - p) <= 1] <= 0.01. That is
  64 requests for p90, 662 for p99 and 6,636 for p99.9 (LoadGen's own figures for p90 and
  p99). Stages report p99.9 only when they hold enough requests for it, and are INVALID
  with fewer than 662 (p99, the highest percentile always reported).
* **Load generator busy** (Locust's own warning threshold; Model Analyzer even stops
  perf_analyzer above 80%): its CPU above 90% of the core its event loop runs on.
* **Late sends** (perf_analyzer's ``DELAY_PCT_THRESHOLD``, where it is a warning): in an
  open-loop stage, more than 1% of requests sent later than the tolerance after their
  intended time. Any arrival due in the window that was never sent at all makes the stage
  INVALID: its latency is unknown, and it would be among the slowest.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reports.stageblocks import WindowResult

#: The confidence of the enough-requests rule (MLPerf LoadGen's early stopping).
MIN_REQUESTS_CONFIDENCE = 0.99
#: The percentile every stage reports, and so the one whose minimum the verdict checks.
HEADLINE_PERCENTILE = ("p99", 0.99)
LOADGEN_CPU_LIMIT_PERCENT = 90.0
LATE_LIMIT = 0.01
RULE_SOURCE = "MLPerf LoadGen's early-stopping minimum at 99% confidence"


@functools.cache
def min_requests(fraction: float, confidence: float = MIN_REQUESTS_CONFIDENCE) -> int:
    """Fewest requests for a trustworthy ``fraction`` percentile (see the module doc)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    q = 1.0 - fraction
    alpha = 1.0 - confidence
    n = 2
    while True:
        # P[X <= 1] for X ~ Binomial(n, q), in logs so large n does not underflow.
        p0 = math.exp(n * math.log1p(-q))
        p1 = math.exp(math.log(n) + math.log(q) + (n - 1) * math.log1p(-q))
        if p0 + p1 <= alpha:
            return n
        n += 1


@dataclass(frozen=True)
class Window:
    """One measurement window, from the requests that *completed* in it (as perf_analyzer
    counts), so it can be judged the moment it closes."""

    start: float
    end: float
    completed: int
    rps: float
    p50_ms: float | None
    #: Not judged for stability (too few samples in one window); kept so a comparison
    #: of two runs can give p99 an uncertainty (``deploybench compare``).
    p99_ms: float | None = None

    def to_json(self) -> WindowResult:
        return {"start": self.start, "end": self.end, "completed": self.completed,
                "rps": self.rps, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms}


def measure_window(start_s: np.ndarray, latency_ms: np.ndarray, ok: np.ndarray,
                   start: float, end: float) -> Window:
    done = start_s + latency_ms / 1000.0
    mask = ok & (done >= start) & (done < end)
    latency = latency_ms[mask]
    span = end - start
    return Window(start, end, int(mask.sum()), float(mask.sum()) / span if span > 0 else 0.0,
                  float(np.median(latency)) if len(latency) else None,
                  _p99(latency) if len(latency) else None)


def _p99(latency_ms: np.ndarray) -> float:
    """Nearest-rank p99 (latency.nearest_rank, which imports this module)."""
    rank = max(1, math.ceil(round(0.99 * len(latency_ms), 9)))
    return float(np.partition(latency_ms, rank - 1)[rank - 1])


def spread(values: Sequence[float]) -> float:
    """max/min - 1: 0.10 means the largest is 10% above the smallest."""
    low = min(values)
    return math.inf if low <= 0 else max(values) / low - 1.0


def is_stable(windows: Sequence[Window], count: int, tolerance: float,
              check_rps: bool = True) -> bool:
    """The last ``count`` windows agree within ``tolerance`` on p50 (and throughput)."""
    last = list(windows[-count:])
    if len(last) < count or any(w.completed == 0 or w.p50_ms is None for w in last):
        return False
    return ((not check_rps or spread([w.rps for w in last]) <= tolerance + 1e-12)
            and spread([w.p50_ms for w in last if w.p50_ms is not None]) <= tolerance + 1e-12)


def settled(windows: Sequence[Window], count: int, tolerance: float,
            check_rps: bool = True) -> bool:
    """Measurement can stop: stable, and enough requests for the headline percentile."""
    return (is_stable(windows, count, tolerance, check_rps)
            and sum(w.completed for w in windows[-count:]) >= min_requests(HEADLINE_PERCENTILE[1]))


def stability(windows: Sequence[Window], count: int, tolerance: float,
              check_rps: bool = True) -> tuple[bool, str | None]:
    """Whether the last ``count`` windows agreed, and if not how they differed.

    Judged apart from the enough-requests rule that :func:`settled` adds: a stage whose
    windows agreed but which holds too few requests is INVALID for that reason alone
    (:func:`reasons`), not called unstable.
    """
    if is_stable(windows, count, tolerance, check_rps):
        return True, None
    return False, describe_instability(windows, count, tolerance)


def describe_instability(windows: Sequence[Window], count: int, tolerance: float) -> str:
    last = list(windows[-count:])
    rps = [w.rps for w in last]
    p50 = [w.p50_ms for w in last if w.p50_ms is not None]
    parts = [f"throughput {min(rps):,.0f}-{max(rps):,.0f} req/s"]
    if p50:
        parts.append(f"p50 {min(p50):.3g}-{max(p50):.3g} ms")
    return (f"unstable: the last {len(last)} windows still differed by more than "
            f"{tolerance:.0%} ({', '.join(parts)}) after {len(windows)} windows; lengthen "
            f"window_s or raise max_windows")


@dataclass(frozen=True)
class Rules:
    """What a stage must meet to be VALID (the scenario sets the error bound)."""

    max_error_rate: float = 0.01
    loadgen_cpu_limit_percent: float = LOADGEN_CPU_LIMIT_PERCENT
    late_limit: float = LATE_LIMIT


def reasons(*, requests: int, ok_requests: int, error_rate: float,
            loadgen_cpu_percent: float | None, stable: bool, instability: str | None,
            late: int, late_tolerance_ms: float | None, queued: int, max_inflight: int | None,
            warmup_complete: bool, rules: Rules, unsent: int = 0) -> list[str]:
    """Why a stage is INVALID (empty: VALID)."""
    out: list[str] = []
    key, fraction = HEADLINE_PERCENTILE
    need = min_requests(fraction)
    if ok_requests == 0:
        out.append("no successful requests in the measurement window")
    elif ok_requests < need:
        out.append(f"too few requests for {key}: {ok_requests:,} < {need:,} ({RULE_SOURCE}); "
                   f"lengthen window_s")
    if not stable:
        out.append(instability or "unstable")
    if loadgen_cpu_percent is not None and loadgen_cpu_percent > rules.loadgen_cpu_limit_percent:
        out.append(f"load generator CPU {loadgen_cpu_percent:.1f}% of its core "
                   f"(> {rules.loadgen_cpu_limit_percent:.0f}%): it, not the target, may "
                   f"have been the limit")
    if requests and late_tolerance_ms is not None and late / requests > rules.late_limit:
        out.append(f"load generator fell behind: {late / requests:.1%} of requests were sent "
                   f"more than {late_tolerance_ms:g} ms after their intended time "
                   f"(> {rules.late_limit:.0%})")
    if unsent:
        out.append(f"load generator fell behind: {unsent:,} arrivals due in the window were "
                   "never sent before the stage ended (their latency is unknown and would "
                   "be among the highest)")
    if requests and max_inflight is not None and queued / requests > rules.late_limit:
        out.append(f"offered rate not sustained: {queued / requests:.1%} of arrivals found "
                   f"all {max_inflight} requests in flight busy and waited (the target is "
                   f"overloaded at this rate; their latency counts from the intended time)")
    if error_rate > rules.max_error_rate:
        out.append(f"error rate {error_rate:.2%} above the scenario's bound "
                   f"({rules.max_error_rate:.2%})")
    if not warmup_complete:
        out.append("warm-up incomplete: not every user had an answer within warmup_max_s, "
                   "so fewer users than planned were sending")
    return out
