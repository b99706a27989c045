"""The result file format: ``run.json`` (versioned) and ``samples.csv.gz`` beside it.

Schema versions of ``run.json`` (bump on any incompatible change and say what changed):

* 1 -- first version: metadata, scenario, bundle, and per target its description,
  parity and closed-loop stages with latency percentiles from raw samples.
* 2 -- a stage's ``requests``/``errors`` include requests unanswered at the drain timeout
  (``truncated`` is now a subset of ``errors``); new stage keys ``unanswered``,
  ``target_peak_rss_mb``, ``target_processes_changed``, ``loadgen_cpu_ms_per_request``;
  ``loadgen_cpu_percent`` is of one core; metadata ``smt_shared_cores``.
* 3 -- validity: every stage has ``valid``/``reasons``, its measurement ``windows``
  (``windows_kept`` of them reported) and ``stable``; ``mode`` is "closed" or "open"
  (open-loop stages have ``concurrency: null`` and an ``open_loop`` block: rate, arrival,
  late and queued sends, send delay, service latency); ``trial``; sweeps' ``sweep`` and
  ``sweep_stop``; ``latency_ms.p999`` is null below 6,636 samples. Scenario
  ``duration_s`` is now ``window_s``. ``samples.csv.gz`` gains ``send_delay_ms`` and
  writes concurrency 0 for open-loop stages.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np

SCHEMA_VERSION = 3
RUN_FILE = "run.json"
SAMPLES_FILE = "samples.csv.gz"
SAMPLE_COLUMNS = ("target", "stage", "concurrency", "start_s", "latency_ms", "ok", "phase",
                  "cold", "send_delay_ms")


class ResultFileError(ValueError):
    """A result file is missing, unreadable or of another schema version."""


class LatencySummary(TypedDict):
    """Milliseconds, over successful requests sent in the window (nearest-rank percentiles)."""

    p50: float
    p90: float
    p95: float
    p99: float
    #: None with fewer samples than it needs (harness.validity.min_requests(0.999)).
    p999: float | None
    min: float
    max: float
    mean: float


class StageResult(TypedDict):
    #: "closed" (users in a loop) or "open" (arrivals at a rate; see ``open_loop``).
    mode: str
    #: Which repetition of the stage list this is (``--trials``), from 0.
    trial: int
    #: Closed loop: concurrent users. Open loop: None.
    concurrency: int | None
    #: The verdict: VALID when ``reasons`` is empty (see harness.validity for the rules).
    valid: bool
    reasons: list[str]
    duration_s: float
    #: Requests sent in the measurement window (answered or not).
    requests: int
    #: Of those, the ones that failed: error status, bad body, connection error, no answer.
    errors: int
    #: Of the errors, requests still unanswered when the drain timed out.
    truncated: int
    #: Requests of the whole stage (warm-up included) unanswered at the drain timeout.
    unanswered: int
    error_rate: float
    #: Successful answers per second of measurement window.
    rps: float
    latency_ms: LatencySummary | None
    #: Successful requests the target marked as cold starts (Lambda), and the latency of
    #: warm and cold ones apart (None when none was cold).
    cold_requests: NotRequired[int]
    latency_warm_ms: NotRequired[LatencySummary | None]
    latency_cold_ms: NotRequired[LatencySummary | None]
    #: The serving platform's own account of the window (Lambda: REPORT records).
    platform: NotRequired[dict[str, Any]]
    #: CPU use as a percentage of the CPUs given to it (100 = all of them busy).
    target_cpu_percent: float | None
    target_cpu_ms_per_request: float | None
    target_rss_mb: float | None
    target_pss_mb: float | None
    #: Peak resident memory of each target process since it started, summed.
    target_peak_rss_mb: float | None
    #: A target process died or appeared during the stage: its CPU figures are incomplete.
    target_processes_changed: bool
    #: The load generator's CPU as a percentage of ONE core: Locust's event loop is a
    #: single thread, so 100% is its ceiling however many CPUs it was given.
    loadgen_cpu_percent: float | None
    loadgen_cpu_ms_per_request: float | None
    warmup_requests: int
    #: How long the warm-up ran (it waits for every user's first answer) and whether
    #: every user had one before the scenario's warmup_max_s.
    warmup_s: NotRequired[float | None]
    warmup_complete: NotRequired[bool]
    #: The measurement windows (start, end, completed, rps, p50_ms), of which the last
    #: ``windows_kept`` are the ones reported, and whether those agreed.
    stable: bool
    windows: list[dict[str, Any]]
    windows_kept: int
    #: A step of a sweep, and on its last step why the sweep stopped.
    sweep: NotRequired[bool]
    sweep_stop: NotRequired[str | None]
    #: Open-loop stages: rate, arrival, fraction/capacity_rps (rate_fractions),
    #: max_inflight, late_tolerance_ms, late and queued counts, send_delay_ms and
    #: service_latency_ms summaries (latency_ms counts from the intended send time).
    open_loop: NotRequired[dict[str, Any]]
    #: Errors by kind over the whole stage (warm-up and cool-down included).
    error_kinds: dict[str, int]
    window_start: float
    window_end: float
    #: Locust's own (bucketed) figures for the window: a cross-check, not the source.
    locust: dict[str, Any]


class ParityResult(TypedDict):
    ok: bool
    examples: int
    max_abs_diff: float
    reference: str


class TargetResult(TypedDict):
    name: str
    status: str  # "ok" | "failed"
    error: str | None
    describe: dict[str, Any]
    parity: ParityResult | None
    stages: list[StageResult]
    loadgen: dict[str, Any]
    #: The scenario's cold starts of this target, if it asked for any.
    cold_starts: NotRequired[dict[str, Any]]


class RunDoc(TypedDict):
    schema_version: int
    #: "running" while targets are measured, then "complete"; "partial" if cut short.
    status: str
    metadata: dict[str, Any]
    scenario: dict[str, Any]
    #: The prices cost estimates used (dated defaults or the user's file).
    prices: NotRequired[dict[str, Any]]
    bundle: dict[str, Any]
    targets: list[TargetResult]
    samples_file: str
    notes: NotRequired[list[str]]


def load_run(path: Path) -> RunDoc:
    """Read ``run.json`` from a run folder (or the file itself) and check its version."""
    file = path / RUN_FILE if path.is_dir() else path
    if not file.exists():
        raise ResultFileError(
            f"no {RUN_FILE} in {path}. Point at a folder written by `deploybench run`"
        )
    try:
        doc = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{file} is not valid JSON ({exc})") from exc
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultFileError(
            f"{file} has schema_version {version!r}; this deploybench reads {SCHEMA_VERSION}. "
            f"Render it with the deploybench version that wrote it"
        )
    run: RunDoc = doc
    return run


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """The samples file as columns."""
    file = path / SAMPLES_FILE if path.is_dir() else path
    with gzip.open(file, "rt") as fh:
        header = fh.readline().strip().split(",")
        rows = [line.rstrip("\n").split(",") for line in fh]
    cols = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    return {
        "target": np.array(cols["target"], dtype=str),
        "stage": np.array(cols["stage"], dtype=int),
        "concurrency": np.array(cols["concurrency"], dtype=int),
        "start_s": np.array(cols["start_s"], dtype=float),
        "latency_ms": np.array(cols["latency_ms"], dtype=float),
        "ok": np.array(cols["ok"], dtype=int).astype(bool),
        "phase": np.array(cols["phase"], dtype=str),
        "cold": np.array(cols["cold"], dtype=int).astype(bool),
        "send_delay_ms": np.array(cols["send_delay_ms"], dtype=float),
    }
