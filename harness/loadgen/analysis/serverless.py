"""A stage's serverless figures from the Lambda emulator's per-invocation records.

Cold and warm invocations are counted and described apart (as serverless benchmark
suites such as SeBS do); billed GB-seconds and cost come from the same records, with the
run's prices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.loadgen.analysis.latency import summarize_latency
from reports.runblocks import Prices
from reports.stageblocks import PlatformSummary


def summarize_invocations(records: list[dict[str, Any]], window_start: float,
                          window_end: float, prices: Prices,
                          warmup_from: float | None = None) -> PlatformSummary:
    """Invocations *received* in the window (the same rule as requests sent in it; at
    each edge a request in flight may land on the other side, at most one per user).

    Cold starts from ``warmup_from`` to the window (the stage's warm-up, where a stage's
    new environments start) are summarised apart as ``scale_out``.
    """
    in_window = [r for r in records if window_start <= r["ts"] < window_end]
    scaled = [r for r in records if r.get("cold") and warmup_from is not None
              and warmup_from <= r["ts"] < window_start]
    throttled = sum(r["outcome"] == "throttled" for r in in_window)
    done = [r for r in in_window if r["outcome"] != "throttled"]
    cold = [r for r in done if r.get("cold")]
    warm = [r for r in done if not r.get("cold")]
    memory_mb = max((r["memory_mb"] for r in done if r.get("memory_mb") is not None),
                    default=None)
    bill_init = bool(prices.get("lambda_bill_init", True))
    billed_ms = sum(
        r["billed_ms"] if bill_init or not r.get("cold")
        else math.ceil(r["duration_ms"]) for r in done
    )
    gb_s = billed_ms / 1000.0 * (memory_mb or 0) / 1024.0
    requests_cost = len(done) * prices["lambda_request"]
    cost = {arch: requests_cost + gb_s * price
            for arch, price in prices["lambda_gb_second"].items()}
    per_million = {arch: c / len(done) * 1_000_000 for arch, c in cost.items()} if done else {}

    def durations(rows: list[dict[str, Any]], key: str) -> Any:
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
        return summarize_latency(values)

    outcomes: dict[str, int] = {}
    for r in in_window:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        "invocations": len(done),
        "cold": len(cold),
        "warm": len(warm),
        "throttled": throttled,
        "outcomes": outcomes,
        "init_ms": durations(cold, "init_ms"),
        # Init's CPU time: what Init takes with a CPU of its own, as on Lambda (here
        # environments starting together share the target CPUs).
        "init_cpu_ms": durations(cold, "init_cpu_ms"),
        "duration_warm_ms": durations(warm, "duration_ms"),
        "duration_cold_ms": durations(cold, "duration_ms"),
        "max_memory_used_mb": max((r.get("max_memory_used_mb") or 0 for r in done),
                                  default=None),
        "memory_mb": memory_mb,
        "environments_max": max((r.get("environments", 0) for r in in_window), default=0),
        "billed_ms": billed_ms,
        "billed_gb_s": gb_s,
        "cost_usd": cost,
        "cost_per_million_usd": per_million,
        "thaw_ms": durations(warm, "thaw_ms"),
        "cpu_warm_ms": durations(warm, "cpu_ms"),
        "cpu_share": max((r["cpu_share"] for r in done if r.get("cpu_share") is not None),
                         default=None),
        "scale_out": {"cold_starts": len(scaled),
                      "init_ms": durations(scaled, "init_ms"),
                      "init_cpu_ms": durations(scaled, "init_cpu_ms")},
    }
