"""The cross-check of a stage's target metrics (``run --metrics``): what the target
counted between the scrape just before the stage's users started and the one right
after its drain, against the load generator's samples of the same stage.

The two scrapes bracket the whole stage, so the comparison takes *every* sample of it
(warm-up, the measurement windows, the cool-down and the drain; failures included), not
only the measured window: nothing else sends prediction requests between them (parity
checks, cold starts and redeploys come before the first stage), and the drain has
waited for every answer. The counts should therefore be equal; a difference is a
request one side saw and the other did not (a connection refused before the handler,
a request given up on at the drain timeout, a handler that does not count).

The latencies are different clocks of the same requests: the target's histogram times
its application (reading the body, any wait for a model thread or a batch, decode,
model, encode; Lambda: REPORT's Duration), the load generator the whole round trip, so
the target's total time must not exceed the client's (with 2% for the histograms' float
sums): totals, as the target may time fewer requests than the client (a throttle, a
refused connection), and those fast failures would pull the client's mean below the
target's. The difference is the time outside the application (network, HTTP parsing,
queueing for a worker). The target's p99 comes from its histogram's buckets
(Prometheus's histogram_quantile), so it is known within a bucket only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.loadgen.protocol import RawStage
from reports.stageblocks import TargetMetricsBlock
from targets.monitoring import Scrape

#: Counts may differ by this share of the load generator's before the stage is flagged:
#: the issue's bound, and room for a request given up on at a drain timeout.
MAX_COUNT_DIFF_PERCENT = 2.0
#: The target's total request time may exceed the client's by this factor (float sums of
#: two clocks over the same requests) before it is flagged.
MEAN_SLACK = 1.02


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def compare(before: Scrape, after: Scrape, latency_ms: np.ndarray, ok: np.ndarray,
            scrapes: int) -> TargetMetricsBlock:
    """The target's figures between two scrapes against the load generator's samples
    of the same span (one entry per request: its latency and whether it succeeded)."""
    target = after.since(before)
    sent = len(ok)
    failed = int(np.count_nonzero(~ok.astype(bool)))
    counted = round(target.requests)
    diff = 100.0 * (counted - sent) / sent if sent else (0.0 if counted == 0 else None)
    target_mean = _ms(target.mean_latency_s)
    client_mean = float(np.mean(latency_ms)) if sent else None
    client_p99 = float(np.percentile(latency_ms, 99)) if sent else None
    why: list[str] = []
    if diff is None or abs(diff) > MAX_COUNT_DIFF_PERCENT:
        why.append(f"the target counted {counted} requests, the load generator sent {sent}"
                   + ("" if diff is None else f" ({diff:+.1f}%)"))
    # Totals, not means: every request the target timed is one the client timed, but not
    # every one the client timed reached the target's clock (a Lambda throttle, a refused
    # connection: fast failures that pull the client's mean below the target's).
    target_sum_ms = target.latency_sum_s * 1000.0
    client_sum_ms = float(np.sum(latency_ms)) if sent else 0.0
    if target_mean is not None and client_mean is not None \
            and target_sum_ms > client_sum_ms * MEAN_SLACK:
        why.append(f"the target's mean request time ({target_mean:.3f} ms) exceeds the load "
                   f"generator's mean latency ({client_mean:.3f} ms), and its "
                   f"{target.latency_count:.0f} requests' time in all ({target_sum_ms:.1f} "
                   f"ms) the client's {sent} round trips' ({client_sum_ms:.1f} ms): the "
                   "server cannot take longer than the round trip")
    return {"target_requests": counted, "loadgen_requests": sent,
            "count_diff_percent": diff,
            "target_errors": round(target.errors), "loadgen_errors": failed,
            "target_mean_ms": target_mean, "loadgen_mean_ms": client_mean,
            "target_p99_ms": _ms(target.quantile_s(0.99)), "loadgen_p99_ms": client_p99,
            "scrapes": scrapes, "agrees": not why, "why": "; ".join(why) or None}


def cross_check(raw: RawStage) -> TargetMetricsBlock | None:
    """The stage's cross-check, from its record's ``target_metrics`` (None: metrics
    were off). A scrape that failed leaves the target's side unknown and the stage
    flagged, with why."""
    found: dict[str, Any] | None = raw.target_metrics
    if found is None:
        return None
    before, after = found.get("before"), found.get("after")
    scrapes = int(found.get("scrapes", 0))
    if before is None or after is None:
        sent = len(raw.ok)
        return {"target_requests": None, "loadgen_requests": sent, "count_diff_percent": None,
                "target_errors": None,
                "loadgen_errors": int(np.count_nonzero(~raw.ok.astype(bool))),
                "target_mean_ms": None,
                "loadgen_mean_ms": float(np.mean(raw.latency_ms)) if sent else None,
                "target_p99_ms": None,
                "loadgen_p99_ms": float(np.percentile(raw.latency_ms, 99)) if sent else None,
                "scrapes": scrapes, "agrees": False,
                "why": found.get("error") or "the stage's edge scrapes are missing",
                "error": found.get("error") or "the stage's edge scrapes are missing"}
    check = compare(Scrape.from_json(before), Scrape.from_json(after), raw.latency_ms,
                    raw.ok, scrapes)
    if check["why"] is not None and raw.unanswered:
        check["why"] += (f"; {raw.unanswered} request(s) were given up on at the drain "
                         "timeout (the target may have answered them after its scrape)")
    return check
