"""Small, complete run documents built by hand, for tests of the decision and its report.

Every figure is chosen by the test, so a recommendation, a tie or a break-even point can
be asserted exactly; the real-run fixtures under tests/fixtures/ cover what a measured run
looks like.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from harness.cpus import CpuPlan
from harness.encodings import Batching
from harness.loadgen.simulated import EPOCH, SimulatedLoadGenerator
from harness.runner import Runner, RunPlan, make_target
from reports.pricing import DEFAULT_PRICES
from reports.runblocks import CodecCost
from reports.schema import SCHEMA_VERSION, RunDoc, StageResult, TargetResult, load_run
from scenarios.catalogue import Scenario
from targets.base import Target
from targets.batching import BatchingSpec
from targets.fake import FakeTarget


def stage(users: int, rps: float, p50: float, p99: float,
          windows: list[tuple[float, float, float]] | None = None, valid: bool = True,
          cpu_ms: float = 0.5, rss_mb: float = 250.0, errors: int = 0,
          platform: dict[str, Any] | None = None,
          batch_sizes: dict[int, int] | None = None) -> StageResult:
    """A closed-loop stage; ``windows`` are its kept windows as (rps, p50, p99);
    ``batch_sizes``: a batched result's forward passes by requests served."""
    windows = windows if windows is not None else [(rps, p50, p99)] * 3
    requests = int(rps * 9) + errors
    out: dict[str, Any] = {
        "mode": "closed", "trial": 0, "concurrency": users, "valid": valid,
        "reasons": [] if valid else ["unstable: made up for a test"],
        "duration_s": 9.0, "requests": requests, "errors": errors, "truncated": 0,
        "unanswered": 0, "error_rate": errors / requests if requests else 0.0, "rps": rps,
        "latency_ms": {"p50": p50, "p90": (p50 + p99) / 2, "p95": (p50 + p99) / 2,
                       "p99": p99, "p999": None, "min": p50 / 2, "max": p99 * 2,
                       "mean": p50},
        "latency_cdf": {"p": [0.0, 0.5, 0.99, 1.0], "ms": [p50 / 2, p50, p99, p99 * 2]},
        "cold_requests": 0, "latency_warm_ms": None, "latency_cold_ms": None,
        "target_cpu_percent": 50.0, "target_cpu_ms_per_request": cpu_ms,
        "target_rss_mb": rss_mb, "target_pss_mb": None, "target_peak_rss_mb": rss_mb,
        "target_processes_changed": False, "loadgen_cpu_percent": 40.0,
        "loadgen_cpu_ms_per_request": 0.1, "warmup_requests": 10, "warmup_s": 1.0,
        "warmup_complete": True, "stable": valid,
        "windows": [{"start": 3.0 * i, "end": 3.0 * (i + 1), "completed": int(r * 3),
                     "rps": r, "p50_ms": a, "p99_ms": b}
                    for i, (r, a, b) in enumerate(windows)],
        "windows_kept": len(windows), "error_kinds": {"HTTP 500": errors} if errors else {},
        "window_start": 0.0, "window_end": 9.0, "batching": None,
        "locust": {"rps": rps, "p50_ms": round(p50), "p99_ms": round(p99)},
    }
    if platform is not None:
        out["platform"] = platform
    if batch_sizes is not None:
        batches = sum(batch_sizes.values())
        served = sum(k * v for k, v in batch_sizes.items())
        out["batching"] = {"sizes": {str(k): v for k, v in sorted(batch_sizes.items())},
                           "batches": batches, "requests": served,
                           "mean_size": served / batches if batches else None}
    result: StageResult = out  # type: ignore[assignment]
    return result


def open_stage(rate: float, rps: float, p99: float, trial: int = 0,
               valid: bool = True) -> StageResult:
    """An open-loop stage at ``rate`` arrivals/s (Poisson), achieving ``rps``."""
    out: dict[str, Any] = dict(stage(0, rps, p99 / 2, p99, valid=valid))
    out.update(mode="open", concurrency=None, trial=trial,
               open_loop={"rate": rate, "arrival": "poisson", "fraction": None, "late": 0,
                          "queued": 0, "service_latency_ms": None, "send_delay_ms": None})
    result: StageResult = out  # type: ignore[assignment]
    return result


def lambda_platform(per_million_x86: float, environments: int = 1) -> dict[str, Any]:
    """REPORT figures whose billed GB-s give ``per_million_x86`` at the default prices."""
    per_request = per_million_x86 / 1e6 - DEFAULT_PRICES["lambda_request"]
    billed_gb_s = 1000 * per_request / DEFAULT_PRICES["lambda_gb_second"]["x86_64"]
    return {"invocations": 1000, "cold": 0, "warm": 1000, "throttled": 0, "outcomes": {},
            "init_ms": None, "init_cpu_ms": None, "duration_warm_ms": None,
            "duration_cold_ms": None, "max_memory_used_mb": 230.0, "memory_mb": 1769,
            "environments_max": environments, "billed_ms": 1000, "billed_gb_s": billed_gb_s,
            "cost_usd": {}, "cost_per_million_usd": {"x86_64": per_million_x86,
                                                     "arm64": per_million_x86 * 0.8},
            "scale_out": {"cold_starts": 0, "init_ms": None, "init_cpu_ms": None}}


def codec(total_ms: float, encoding: str) -> CodecCost:
    """A codec block costing ``total_ms``, all of it the request's encoding, done before
    the load: nothing on the measured path (``on_path_ms`` 0)."""
    return {"request_encode_ms": total_ms, "request_decode_ms": 0.0,
            "response_encode_ms": 0.0, "response_decode_ms": 0.0, "total_ms": total_ms,
            "on_path_ms": 0.0, "encoding": encoding, "request_bytes": 0}


def target(name: str, stages: list[StageResult], status: str = "ok",
           error: str | None = None, cold_s: float | None = 1.2) -> TargetResult:
    out: dict[str, Any] = {
        "name": name, "status": status, "error": error,
        "describe": {"runtime": "process", "server": name, "cpus": [1], "workers": 1},
        "parity": None if name == "inprocess" else
        {"ok": True, "examples": 64, "max_abs_diff": 0.0, "reference": "in-process"},
        "stages": stages, "loadgen": {"target_in_loadgen": name == "inprocess"},
        "codec": None if name == "inprocess" else codec(0.05, "json"),
    }
    if cold_s is not None:
        out["cold_starts"] = {"supported": True, "definition": "made up",
                              "samples": [{"total_s": cold_s}] * 3,
                              "total_ms": {"p50": cold_s * 1000, "max": cold_s * 1000}}
    result: TargetResult = out  # type: ignore[assignment]
    return result


def run(targets: list[TargetResult], slo: dict[str, float] | None = None,
        monthly_requests: float | None = None) -> RunDoc:
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "status": "complete",
        "metadata": {"started_at": "2026-11-27T00:00:00+00:00", "hostname": "test",
                     "cpu_model": "test CPU", "cpu_count": 2, "memory_gb": 24,
                     "target_cpus": [1], "loadgen_cpus": [0], "trials": 1,
                     "slo": slo or {}, "slo_p99_ms": (slo or {}).get("p99"),
                     "monthly_requests": monthly_requests, "python": "3.11",
                     "torch": "2.13.0", "locust": "2.43", "deploybench": "0.1.0"},
        "scenario": {"name": "made-up", "sha256": "0" * 64, "concurrency": [1, 4],
                     "warmup_s": 1, "window_s": 3, "stability_windows": 3,
                     "stability_tolerance": 0.1, "max_windows": 6, "cooldown_s": 0.5},
        "prices": copy.deepcopy(DEFAULT_PRICES),
        "bundle": {"name": "digits", "preprocessing": "server side: made up"},
        "targets": targets, "samples_file": "samples.csv.gz", "notes": [],
    }
    result: RunDoc = doc  # type: ignore[assignment]
    return result


def simulate_fast_slow(out: Path, scenario: Scenario) -> RunDoc:
    """A simulated run of two fake targets: "fast" (1 ms) and "slow" (4 ms), two servers
    each, written to ``out`` as a real run would be."""
    plan = RunPlan(targets=("fast", "slow"), bundle="digits", scenario=scenario,
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=out)

    def factory(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> FakeTarget:
        return FakeTarget(plan.bundle, name=name,
                          service_time_s=0.001 if name == "fast" else 0.004, capacity=2)

    return Runner(plan, SimulatedLoadGenerator(), target_factory=factory).run()


def simulate_batched(out: Path, scenario: Scenario) -> RunDoc:
    """A simulated run of the fake target unbatched and batched (``--batching both``),
    written to ``out``: its batched result's batch log holds a forward pass of 1 to 4
    requests every 10 ms of the simulated clock's first hour."""
    batch_log = out / "batch-log"
    batch_log.mkdir(parents=True)
    (batch_log / "batches-1.log").write_text("".join(
        f"{EPOCH + i / 100:.6f} {1 + i % 4} {1 + i % 4}\n" for i in range(360_000)))
    plan = RunPlan(targets=("fake",), bundle="digits", scenario=scenario,
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=out,
                   batching=Batching(BatchingSpec(), unbatched=True))

    def factory(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> Target:
        target = make_target(name, plan, encoding, log_dir)
        if name.endswith("+batch"):
            target.batch_log_dir = batch_log  # type: ignore[attr-defined]
        return target

    return Runner(plan, SimulatedLoadGenerator(), target_factory=factory).run()


#: Each stage's kept windows are spread by these factors (mean 1, a few percent apart), so
#: the windows give every figure a standard error, as on a real machine.
SPREAD = (0.97, 1.0, 1.03)


def spread_fast_slow(out: Path) -> RunDoc:
    """simulate_fast_slow over three kept windows a stage, spread by SPREAD, read back."""
    scenario = Scenario(name="unit", description="", concurrency=(1, 4), warmup_s=0.5,
                        stability_windows=3, max_windows=3, window_s=2.0, cooldown_s=0.5,
                        drain_timeout_s=1.0, sha256="0" * 64, path="unit.yaml")
    simulate_fast_slow(out, scenario)
    run = load_run(out)
    for target in run["targets"]:
        for stage in target["stages"]:
            kept = stage["windows"][-stage["windows_kept"]:]
            assert len(kept) == 3
            assert all("p99_ms" in w for w in kept)
            for window, factor in zip(kept, SPREAD, strict=True):
                for key in ("rps", "p50_ms", "p99_ms"):
                    window[key] *= factor  # type: ignore[literal-required]
    return run
