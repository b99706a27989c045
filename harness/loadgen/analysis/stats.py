"""A stage's figures from its raw per-request samples: the steady state (the kept
windows), everything measured after the warm-up, the open-loop figures and the verdict.
Percentiles are nearest-rank (:mod:`harness.loadgen.analysis.latency`)."""

from __future__ import annotations

import numpy as np

from harness.loadgen.analysis.latency import latency_cdf, summarize_latency
from harness.loadgen.analysis.timeline import summarize as summarize_timeline
from harness.loadgen.analysis.validity import Rules, reasons
from harness.loadgen.protocol import RawStage
from harness.results import StageResult
from reports.stageblocks import AllMeasured


def _completed_rps(raw: RawStage) -> float | None:
    kept = raw.windows[-raw.windows_kept:] if raw.windows else []
    span = sum(w["end"] - w["start"] for w in kept)
    return sum(w["completed"] for w in kept) / span if span > 0 else None


def _all_measured(raw: RawStage, discarded: int) -> AllMeasured:
    """Everything measured after the warm-up, the discarded windows included. Steady-state
    windows are the rule for throughput, but a stall, a GC pause or a reload in a window
    the stability rule left out is part of how the deployment behaves: kept here, with
    when its slowest request was sent."""
    mask = (raw.start_s >= raw.measure_start) & (raw.start_s < raw.window_end)
    ok = raw.ok[mask]
    latency = raw.latency_ms[mask]
    starts = raw.start_s[mask]
    worst_at_s = worst_ms = None
    if ok.any():
        good = np.flatnonzero(ok)
        i = good[int(np.argmax(latency[good]))]
        worst_at_s, worst_ms = float(starts[i] - raw.measure_start), float(latency[i])
    return {"from": raw.measure_start, "to": raw.window_end,
            "discarded_windows": discarded, "requests": int(mask.sum()),
            "errors": int((~ok).sum()), "latency_ms": summarize_latency(latency[ok]),
            # The slowest successful request: sent this long after the measurement began.
            "worst_at_s": worst_at_s, "worst_ms": worst_ms}


def window_mask(raw: RawStage) -> np.ndarray:
    """Requests *sent* inside the measurement window.

    Selecting by send time (not completion) keeps the slow requests that finish after
    the window closes; the cool-down and drain let them finish under the same load.
    """
    return (raw.start_s >= raw.window_start) & (raw.start_s < raw.window_end)


def summarize_stage(raw: RawStage, rules: Rules | None = None) -> StageResult:
    """One stage's figures, all computed from its raw samples and resource readings, and
    its VALID/INVALID verdict under ``rules``."""
    rules = rules or Rules()
    in_window = window_mask(raw)
    ok = raw.ok[in_window]
    latency = raw.latency_ms[in_window]
    cold = raw.cold_flags()[in_window]
    delay = raw.send_delays()[in_window]
    queued = raw.queued_flags()[in_window]
    window_s = raw.window_end - raw.window_start
    n_ok = int(ok.sum())
    # Unanswered requests are failed samples too, so they count here and in errors.
    requests = int(in_window.sum())
    errors = requests - n_ok
    warmup = int((raw.start_s < raw.measure_start).sum())
    error_rate = errors / requests if requests else 0.0
    open_loop = raw.mode == "open"
    tolerance = raw.late_tolerance_ms if open_loop else None
    late = int(((delay > tolerance) & ~queued).sum()) if tolerance is not None else 0
    n_queued = int(queued.sum())

    def per_request_ms(cpu_s: float | None) -> float | None:
        return cpu_s * 1000.0 / requests if requests and cpu_s is not None else None

    why = reasons(requests=requests, ok_requests=n_ok, unsent=raw.unsent,
                  error_rate=error_rate,
                  loadgen_cpu_percent=raw.loadgen_cpu_percent, stable=raw.stable,
                  instability=raw.instability, late=late, late_tolerance_ms=tolerance,
                  queued=n_queued, max_inflight=raw.max_inflight if open_loop else None,
                  warmup_complete=raw.warmup_complete, rules=rules)
    timeline = None
    if raw.timeline is not None:  # judged per segment, with no stability rule
        timeline, why = summarize_timeline(raw, rules)
    stage: StageResult = {
        "mode": raw.mode,
        "trial": raw.trial,
        "concurrency": raw.concurrency,
        "valid": not why,
        "reasons": why,
        "duration_s": window_s,
        "requests": requests,
        "errors": errors,
        "truncated": raw.truncated,
        "unanswered": raw.unanswered,
        "error_rate": error_rate,
        # Goodput: successful answers per second of window. With 0 errors this equals
        # what wrk calls Requests/sec.
        "rps": n_ok / window_s if window_s > 0 else 0.0,
        # Open loop: from the intended send time (what a user of the service waits).
        "latency_ms": summarize_latency(latency[ok]),
        "latency_cdf": latency_cdf(latency[ok]),
        # Cold starts the target marked (Lambda): counted, and their latency apart.
        "cold_requests": int((cold & ok).sum()),
        "latency_warm_ms": summarize_latency(latency[ok & ~cold]) if cold.any() else None,
        "latency_cold_ms": summarize_latency(latency[ok & cold]) if cold.any() else None,
        "target_cpu_percent": raw.target_cpu_percent,
        "target_cpu_ms_per_request": per_request_ms(raw.target_cpu_s),
        "target_rss_mb": raw.target_rss_mb,
        "target_pss_mb": raw.target_pss_mb,
        "target_peak_rss_mb": raw.target_peak_rss_mb,
        "target_processes_changed": raw.target_processes_changed,
        "loadgen_cpu_percent": raw.loadgen_cpu_percent,
        "loadgen_cpu_ms_per_request": per_request_ms(raw.loadgen_cpu_s),
        "warmup_requests": warmup,
        "warmup_s": raw.warmup_s,
        "warmup_complete": raw.warmup_complete,
        "stable": raw.stable,
        "windows": raw.windows,
        "windows_kept": raw.windows_kept,
        "error_kinds": raw.error_kinds,
        # A batched result's batches: the runner adds them from its servers' batch logs.
        "batching": None,
        "window_start": raw.window_start,
        "window_end": raw.window_end,
        "locust": raw.locust,
    }
    if raw.worker_samples is not None:
        stage["worker_samples"] = raw.worker_samples
    if raw.target_died_at is not None:
        stage["target_died_at"] = raw.target_died_at
        why.append(f"the target died {raw.target_died_at - raw.window_start:+.1f} s from the "
                   "start of the measured window: its figures are those of a dying target")
        stage["valid"] = False
    if timeline is not None:
        stage["timeline"] = timeline
    discarded = len(raw.windows) - raw.windows_kept
    if discarded > 0 and timeline is None:
        stage["all_measured"] = _all_measured(raw, discarded)
    if raw.sweep:
        stage["sweep"] = True
        stage["sweep_stop"] = raw.sweep_stop
    if open_loop:
        stage["open_loop"] = {
            "rate": raw.rate, "arrival": raw.arrival, "fraction": raw.fraction,
            "capacity_rps": raw.capacity_rps, "max_inflight": raw.max_inflight,
            "late_tolerance_ms": tolerance, "late": late, "queued": n_queued,
            "unsent": raw.unsent,
            # Answers per second as they arrived in the kept windows: in overload the
            # requests *due* in the window are answered later, so req/s lags this.
            "completed_rps": _completed_rps(raw),
            "send_delay_ms": summarize_latency(delay),
            # Latency from the actual send: what the target took, without the schedule's
            # debt. The gap between the two is coordinated omission made visible.
            "service_latency_ms": summarize_latency((latency - delay)[ok]),
        }
    return stage
