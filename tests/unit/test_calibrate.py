"""Calibration: ceilings from a null-target run, where they apply, and the 80% flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import calibrate
from reports.findings import near_ceiling


def stage(users: int, rps: float, loadgen: float, server: float, errors: int = 0,
          reasons: list[str] | None = None) -> dict[str, Any]:
    return {"concurrency": users, "rps": rps, "errors": errors, "valid": not reasons,
            "reasons": reasons or [], "latency_ms": {"p50": 0.2 * users},
            "loadgen_cpu_percent": loadgen, "target_cpu_percent": server, "mode": "closed"}


def null_run() -> Any:
    busy = "load generator CPU 99% of its core (> 90%): it, not the target, may have been"
    return {"metadata": {"started_at": "2026-11-27T19:00:00"}, "targets": [
        {"name": "null-http", "status": "ok", "error": None, "stages": [
            stage(1, 4000, 60, 10), stage(16, 9000, 99, 25, reasons=[busy]),
            stage(32, 9500, 99, 25, errors=3, reasons=[busy])]},
        {"name": "null-lambda", "status": "ok", "error": None, "stages": [
            stage(1, 900, 30, 70), stage(4, 1300, 40, 99)]},
        {"name": "null-grpc", "status": "failed", "error": "boom", "stages": []},
    ]}


def test_ceilings_take_the_best_clean_stage_and_say_what_limited_it() -> None:
    c = calibrate.ceilings(null_run())
    assert c["http"]["rps"] == 9000  # the 9,500 stage had failures
    assert c["http"]["limited_by"] == "load generator"
    assert c["http"]["valid"]  # a saturated load generator is the point here
    assert c["http"]["p50_ms_at_1_user"] == 0.2
    assert c["lambda"]["rps"] == 1300
    assert c["lambda"]["limited_by"] == "null server"
    assert c["grpc"] == {"error": "boom"}


def test_calibration_applies_only_to_the_same_machine_and_cpus(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    assert calibrate.load_for([1], [0], path)[1] is not None  # none yet
    calibrate.save(null_run(), tmp_path, [1], [0], path)
    doc, note = calibrate.load_for([1], [0], path)
    assert note is None
    assert doc is not None
    assert doc["ceilings"]["http"]["rps"] == 9000
    doc, note = calibrate.load_for([0], [1], path)
    assert doc is None
    assert "target_cpus" in str(note)


def test_targets_near_the_ceiling_are_flagged() -> None:
    run: Any = {"metadata": {"calibration": {"created_at": "then", "ceilings": {
        "http": {"rps": 9000.0, "limited_by": "load generator"}}}},
        "targets": [
            {"name": "flask", "stages": [stage(1, 2000, 30, 90), stage(4, 7500, 95, 60)]},
            {"name": "grpc", "stages": [stage(4, 8000, 90, 90)]},  # no grpc ceiling
        ]}
    [warning] = near_ceiling(run)
    assert warning.startswith("flask reached 7,500 req/s at 4 users, 83% of the harness's "
                              "own http ceiling")
    run["targets"][0]["stages"] = [stage(4, 7100, 95, 60)]  # 79%
    assert near_ceiling(run) == []


def test_a_latency_bound_calibration_is_no_ceiling() -> None:
    run: Any = {"metadata": {"calibration": {"created_at": "then", "ceilings": {
        "grpc": {"rps": 1000.0, "limited_by": "neither side saturated (latency-bound)"}}}},
        "targets": [{"name": "grpc", "stages": [stage(4, 950, 50, 50)]}]}
    assert near_ceiling(run) == []
