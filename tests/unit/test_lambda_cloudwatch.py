"""The Lambda emulator's CloudWatch view (targets.awslambda.cloudwatch) and its Prometheus
metrics (targets.awslambda.metrics), fed by hand: periods on the clock, the statistics
of each, and what the cross-check reads back from a scrape."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from targets.awslambda.cloudwatch import CloudWatchPeriods, nearest_rank
from targets.awslambda.metrics import DURATION_BUCKETS_MS, FunctionMetrics
from targets.monitoring import LATENCY_BUCKETS_S, parse_scrape

T0 = 1_800_000_000.0  # a whole minute (divisible by 60)


def by_metric(lines: list[dict[str, Any]]) -> dict[tuple[float, str], dict[str, Any]]:
    return {(line["period_start"], line["metric"]): line for line in lines}


def test_periods_are_clock_minutes_with_cloudwatchs_statistics() -> None:
    cw = CloudWatchPeriods("fn")
    cw.concurrency(T0 + 1, 1)
    cw.concurrency(T0 + 1.5, 2)
    cw.invocation(T0 + 2, 10.0, error=False)
    cw.concurrency(T0 + 2, 1)
    cw.invocation(T0 + 3, 30.0, error=True)
    cw.concurrency(T0 + 3, 0)
    cw.throttle(T0 + 1.7)
    for i in range(100):  # the next minute: durations 1..100 ms
        cw.concurrency(T0 + 60 + i * 0.5, 1)
        cw.invocation(T0 + 60 + i * 0.5, float(i + 1), error=False)
        cw.concurrency(T0 + 60 + i * 0.5, 0)
    assert cw.due(T0 + 59.9) == []  # the first minute has not ended
    first = by_metric(cw.due(T0 + 60.01))
    assert {start for start, _ in first} == {T0}
    assert first[(T0, "Invocations")]["Sum"] == 2
    assert first[(T0, "Errors")]["Sum"] == 1
    assert first[(T0, "Throttles")]["Sum"] == 1
    duration = first[(T0, "Duration")]
    assert (duration["SampleCount"], duration["Sum"], duration["Minimum"],
            duration["Maximum"]) == (2, 40.0, 10.0, 30.0)
    assert duration["unit"] == "Milliseconds"
    assert first[(T0, "ConcurrentExecutions")]["Maximum"] == 2
    assert first[(T0, "Invocations")]["timestamp"] == "2027-01-15T08:00:00Z"
    assert cw.due(T0 + 60.02) == []  # written once
    second = by_metric(cw.drain(T0 + 100))  # at exit: the open minute, marked so
    d = second[(T0 + 60, "Duration")]
    assert (d["SampleCount"], d["p50"], d["p99"]) == (100, 50.0, 99.0)
    assert second[(T0 + 60, "Errors")]["Sum"] == 0  # zero counts are datapoints too
    assert second[(T0 + 60, "Throttles")]["Sum"] == 0
    assert all(line["complete"] is False for line in second.values())
    assert cw.drain(T0 + 200) == []


def test_an_idle_minute_has_no_line_but_a_long_invocation_keeps_its_concurrency() -> None:
    cw = CloudWatchPeriods("fn")
    cw.invocation(T0 + 5, 1.0, error=False)
    assert [line["metric"] for line in cw.due(T0 + 180)] == [
        "Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"]
    cw.concurrency(T0 + 200, 1)  # an invocation starts, and runs past two boundaries
    assert by_metric(cw.due(T0 + 240.01))[(T0 + 180, "ConcurrentExecutions")]["Maximum"] == 1
    lines = by_metric(cw.due(T0 + 300.01))  # no event in that minute: still running
    assert lines[(T0 + 240, "ConcurrentExecutions")]["Maximum"] == 1
    assert lines[(T0 + 240, "Invocations")]["Sum"] == 0
    assert "Duration" not in {metric for _, metric in lines}
    cw.concurrency(T0 + 310, 0)
    cw.invocation(T0 + 310, 110_000.0, error=True)  # a timeout, say
    assert by_metric(cw.drain(T0 + 320))[(T0 + 300, "Errors")]["Sum"] == 1


def test_nearest_rank_and_bad_periods() -> None:
    assert nearest_rank([1.0], 0.99) == 1.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    with pytest.raises(ValueError, match="no values"):
        nearest_rank([], 0.5)
    with pytest.raises(ValueError, match="positive"):
        CloudWatchPeriods("fn", period_s=0)


def test_the_scrape_counts_invocations_and_throttles_as_requests(tmp_path: Path) -> None:
    path = tmp_path / "fn-cloudwatch.jsonl"
    metrics = FunctionMetrics("fn", path)
    for duration_ms, error in ((2.0, False), (4.0, False), (3000.0, True)):
        metrics.running(1)
        metrics.invoked(duration_ms, error)
        metrics.running(0)
    metrics.throttled()
    metrics.running(2)  # two environments busy as it is scraped
    text, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    scrape = parse_scrape(text.decode(), at=1.0)
    assert scrape.requests == 3 + 1  # invocations + throttles
    assert scrape.errors == 1 + 1  # function errors + throttles
    assert scrape.latency_count == 3
    assert math.isclose(scrape.latency_sum_s, 3.006)
    # Duration's buckets are the contract's latency buckets, read back in seconds.
    assert [le for le, _ in scrape.buckets][:-1] == pytest.approx(list(LATENCY_BUCKETS_S))
    assert len(DURATION_BUCKETS_MS) == len(LATENCY_BUCKETS_S)
    assert dict(scrape.buckets)[math.inf] == 3
    assert "lambda_concurrent_executions 2.0" in text.decode()
    metrics.close()
    metrics.close()  # idempotent
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {line["metric"]: line for line in lines}["Invocations"]["Sum"] == 3
    assert {line["metric"]: line for line in lines}["ConcurrentExecutions"]["Maximum"] == 2


def test_private_registries_do_not_share_counts() -> None:
    one, two = FunctionMetrics("a"), FunctionMetrics("b")
    one.invoked(1.0, error=False)
    assert parse_scrape(two.exposition()[0].decode(), at=0.0).requests == 0
    assert parse_scrape(one.exposition()[0].decode(), at=0.0).requests == 1


def test_each_period_is_written_once_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "cw.jsonl"
    metrics = FunctionMetrics("fn", path, period_s=0.2)

    async def scenario() -> list[dict[str, Any]]:
        flusher = asyncio.create_task(metrics.flush_periods())
        metrics.invoked(5.0, error=False)
        await asyncio.sleep(0.5)  # past the period's end: written while running
        written = [json.loads(line) for line in path.read_text().splitlines()]
        flusher.cancel()
        return written

    written = asyncio.run(scenario())
    assert {line["metric"]: line for line in written}["Invocations"]["Sum"] == 1
    assert all("complete" not in line for line in written)  # whole periods
    metrics.close()
    assert len(path.read_text().splitlines()) == len(written)  # nothing left to add
