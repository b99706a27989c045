"""What the Lambda sandbox adds to the results and the report: each stage's thaw times
and CPU share, and the platform table's word on how environments were shaped."""

from __future__ import annotations

from typing import Any

from harness.loadgen.analysis.serverless import summarize_invocations
from reports.pricing import DEFAULT_PRICES
from reports.serverless import platform_table, sandbox_text
from targets.awslambda.shape import Sandbox
from tests.unit.runs import lambda_platform, stage, target


def record(ts: float, cold: bool, thaw: float | None, share: float | None) -> dict[str, Any]:
    return {"ts": ts, "cold": cold, "duration_ms": 2.0, "init_ms": 900.0 if cold else None,
            "billed_ms": 3, "memory_mb": 512, "max_memory_used_mb": 90.0, "outcome": "ok",
            "environments": 1, "thaw_ms": thaw, "cpu_share": share}


def test_the_stage_summary_has_thaw_times_and_the_cpu_share() -> None:
    records = [record(1.0, True, None, 0.2894), record(2.0, False, 0.3, 0.2894),
               record(3.0, False, None, 0.2894), record(4.0, False, 0.5, 0.2894)]
    s = summarize_invocations(records, 0.0, 10.0, DEFAULT_PRICES)
    thaw = s["thaw_ms"]
    assert thaw is not None
    assert (thaw["min"], thaw["max"]) == (0.3, 0.5)  # warm invocations that were frozen
    assert s["cpu_share"] == 0.2894


def test_unthrottled_records_have_no_cpu_share_or_thaw() -> None:
    s = summarize_invocations([record(1.0, False, None, None)], 0.0, 10.0, DEFAULT_PRICES)
    assert s["thaw_ms"] is None
    assert s["cpu_share"] is None


def sandbox(enforced: bool, freeze: str = "cgroup-v1") -> Sandbox:
    mechanism = "cgroup-v1" if enforced else "none"
    return {"memory_mb": 512, "cpu_share": 0.2894, "cpu_share_effective": 0.2894,
            "cpu": mechanism, "memory": mechanism, "freeze": freeze,  # type: ignore[typeddict-item]
            "enforced": enforced, "reason": None if enforced else "cgroup v1: read-only"}


def lambda_target(box: Sandbox | None) -> Any:
    t: Any = target("lambda", [stage(1, 100.0, 5.0, 9.0, platform=lambda_platform(2.0))])
    t["describe"]["sandbox"] = box
    return t


def test_an_enforced_sandbox_is_named_with_its_share_and_limit() -> None:
    text = sandbox_text(lambda_target(sandbox(True)))
    assert text is not None
    assert "held to 0.29 CPU" in text
    assert "killed past 512 MB" in text
    assert "frozen between invocations (cgroup-v1)" in text
    assert "UNTHROTTLED" not in text


def test_an_unenforced_sandbox_marks_the_results_unthrottled_and_says_why() -> None:
    t = lambda_target(sandbox(False, freeze="none"))
    text = sandbox_text(t)
    assert text is not None
    assert text.startswith("UNTHROTTLED")
    assert "cgroup v1: read-only" in text
    assert "not frozen" in text
    table = platform_table(t)
    assert table is not None
    assert "UNTHROTTLED" in (table.caption or "")
    assert "thaw p50 ms" in table.headers


def test_results_without_a_sandbox_say_nothing_of_it() -> None:
    t = lambda_target(None)
    assert sandbox_text(t) is None
    table = platform_table(t)
    assert table is not None
    assert "held to" not in (table.caption or "")
