from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.loadgen.analysis.latency import nearest_rank, summarize_latency
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.protocol import RawStage


def test_nearest_rank_picks_observed_values() -> None:
    values = np.arange(1, 101, dtype=float)  # 1..100
    assert nearest_rank(values, 0.50) == 50
    assert nearest_rank(values, 0.99) == 99
    assert nearest_rank(values, 0.999) == 100  # fewer than 1000 samples: the maximum
    assert nearest_rank(values, 0.001) == 1


@pytest.mark.parametrize("n", [1, 2, 7, 100, 999, 1000, 1001, 12345])
def test_nearest_rank_matches_numpys_inverted_cdf(n: int) -> None:
    values = np.sort(np.random.default_rng(n).exponential(size=n))
    for fraction in (0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        assert nearest_rank(values, fraction) == np.quantile(values, fraction,
                                                             method="inverted_cdf")


def test_nearest_rank_refuses_empty() -> None:
    with pytest.raises(ValueError, match="no samples"):
        nearest_rank(np.array([]), 0.5)


def test_percentiles_are_ordered_and_bounded_by_max() -> None:
    rng = np.random.default_rng(1)
    latency = rng.lognormal(mean=0, sigma=1.5, size=7000)
    s = summarize_latency(latency)
    assert s is not None
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["p999"] <= s["max"]
    assert s["max"] == latency.max()
    assert s["mean"] == pytest.approx(latency.mean())


def test_sub_millisecond_latencies_keep_their_resolution() -> None:
    # Locust would bucket all of these to 0 ms.
    s = summarize_latency(np.array([0.151, 0.152, 0.153, 0.154]))
    assert s is not None
    assert s["p50"] == 0.152
    assert s["max"] == 0.154


def _raw(start_s: list[float], latency_ms: list[float], ok: list[bool], truncated: int = 0
         ) -> RawStage:
    return RawStage(concurrency=2, window_start=10.0, window_end=20.0,
                    start_s=np.array(start_s), latency_ms=np.array(latency_ms),
                    ok=np.array(ok), truncated=truncated, unanswered=truncated,
                    target_cpu_percent=50.0,
                    target_cpu_s=1.0, loadgen_cpu_percent=20.0, loadgen_cpu_s=0.5,
                    target_rss_mb=100.0, target_pss_mb=90.0)


def test_stage_counts_only_requests_sent_in_the_window() -> None:
    # warm-up (9.5), window (10, 15, 19.99), cool-down (20.0: the window is half-open)
    raw = _raw([9.5, 10.0, 15.0, 19.99, 20.0], [100.0, 1.0, 2.0, 3.0, 100.0],
               [True, True, True, True, True])
    stage = summarize_stage(raw)
    assert stage["requests"] == 3
    assert stage["warmup_requests"] == 1
    assert stage["rps"] == pytest.approx(3 / 10.0)
    assert stage["latency_ms"] is not None
    assert stage["latency_ms"]["max"] == 3.0


def test_slow_request_sent_in_window_is_kept() -> None:
    # Sent at 19.9, answered long after the window closed: still counted.
    raw = _raw([12.0, 19.9], [1.0, 5000.0], [True, True])
    stage = summarize_stage(raw)
    assert stage["latency_ms"] is not None
    assert stage["latency_ms"]["max"] == 5000.0


def test_errors_are_counted_but_not_in_latency_or_rps() -> None:
    # The last failure is an unanswered request (a failed sample that waited 900 ms).
    raw = _raw([11.0, 12.0, 13.0, 14.0], [1.0, 1.0, 0.1, 900.0], [True, True, False, False],
               truncated=1)
    stage = summarize_stage(raw)
    assert stage["requests"] == 4
    assert stage["errors"] == 2
    assert stage["truncated"] == 1
    assert stage["error_rate"] == pytest.approx(2 / 4)
    assert stage["rps"] == pytest.approx(2 / 10.0)
    assert stage["latency_ms"] is not None
    assert stage["latency_ms"]["min"] == 1.0


def test_stage_with_no_success_has_no_latency() -> None:
    stage = summarize_stage(_raw([11.0], [0.5], [False]))
    assert stage["latency_ms"] is None
    assert stage["rps"] == 0.0


def test_cpu_per_request_from_cpu_seconds() -> None:
    stage = summarize_stage(_raw([11.0, 12.0], [1.0, 1.0], [True, True]))
    assert stage["target_cpu_ms_per_request"] == pytest.approx(1000.0 / 2)
    assert stage["loadgen_cpu_ms_per_request"] == pytest.approx(500.0 / 2)


def test_a_stage_the_target_died_in_is_invalid_and_says_when() -> None:
    raw = _raw([11.0, 12.0, 13.0], [1.0, 1.0, 1.0], [True, False, False])
    assert "target_died_at" not in summarize_stage(raw)
    raw = dataclasses.replace(raw, target_died_at=11.5)
    stage = summarize_stage(raw)
    assert stage["target_died_at"] == 11.5
    assert not stage["valid"]
    assert any(r.startswith("the target died +1.5 s from the start of the measured window")
               for r in stage["reasons"])
