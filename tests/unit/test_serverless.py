from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.loadgen.analysis.serverless import summarize_invocations
from reports.pricing import DEFAULT_PRICES, PricesError, load_prices


def record(ts: float, cold: bool = False, duration: float = 2.0, init: float | None = None,
           outcome: str = "ok") -> dict[str, object]:
    if outcome == "throttled":
        return {"ts": ts, "source": "url", "outcome": "throttled"}
    billed = math.ceil(duration + (init or 0.0))
    return {"ts": ts, "cold": cold, "duration_ms": duration, "init_ms": init,
            "billed_ms": billed, "memory_mb": 1024, "max_memory_used_mb": 200.0,
            "outcome": outcome, "environments": 2}


def test_cold_and_warm_are_counted_apart_and_billed() -> None:
    records = [record(9.0, cold=True, init=900.0),  # before the window: not counted
               record(10.0, cold=True, duration=1.2, init=1000.0),
               record(11.0, duration=1.5), record(12.0, duration=2.5),
               record(13.0, outcome="throttled"), record(21.0)]
    s = summarize_invocations(records, 10.0, 20.0, DEFAULT_PRICES)
    assert (s["invocations"], s["cold"], s["warm"], s["throttled"]) == (3, 1, 2, 1)
    assert s["init_ms"]["p50"] == 1000.0
    assert s["duration_warm_ms"]["max"] == 2.5
    # ceil(1.2 + 1000) + ceil(1.5) + ceil(2.5) = 1002 + 2 + 3 ms at 1 GB.
    assert s["billed_ms"] == 1007
    assert s["billed_gb_s"] == pytest.approx(1.007)
    x86 = 3 * 0.20e-6 + 1.007 * 0.0000166667
    assert s["cost_usd"]["x86_64"] == pytest.approx(x86)
    assert s["cost_per_million_usd"]["x86_64"] == pytest.approx(x86 / 3 * 1e6)


def test_init_can_be_left_unbilled() -> None:
    prices = {**DEFAULT_PRICES, "lambda_bill_init": False}
    s = summarize_invocations([record(1.0, cold=True, duration=1.2, init=1000.0)], 0, 2, prices)
    assert s["billed_ms"] == 2


def test_price_file_overrides_keys(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("lambda_request: 0.0000004\nlambda_gb_second: {arm64: 0.00001}\n"
                    "as_of: '2027-01'\n")
    prices = load_prices(path)
    assert prices["lambda_request"] == 0.0000004
    assert prices["lambda_gb_second"] == {"x86_64": 0.0000166667, "arm64": 0.00001}
    assert prices["as_of"] == "2027-01"
    assert load_prices(None) == DEFAULT_PRICES


def test_non_numeric_price_is_refused_before_any_load(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("lambda_gb_second: {arm64: cheap}\n")
    with pytest.raises(PricesError, match=r"lambda_gb_second\.arm64"):
        load_prices(path)


def test_unknown_price_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("gpu_hour: 3\n")
    with pytest.raises(PricesError, match="gpu_hour"):
        load_prices(path)
