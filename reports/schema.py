"""The result file format: ``run.json`` (versioned) and ``samples.csv.gz`` beside it.

Schema versions of ``run.json`` (bump on any incompatible change and say what changed):

* 1 -- first version: metadata, scenario, bundle, and per target its description,
  parity and closed-loop stages with latency percentiles from raw samples.
* 2 -- a stage's ``requests``/``errors`` include requests unanswered at the drain timeout
  (``truncated`` is now a subset of ``errors``); new stage keys ``unanswered``,
  ``target_peak_rss_mb``, ``target_processes_changed``, ``loadgen_cpu_ms_per_request``;
  ``loadgen_cpu_percent`` is of one core; metadata ``smt_shared_cores``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np

SCHEMA_VERSION = 2
RUN_FILE = "run.json"
SAMPLES_FILE = "samples.csv.gz"
SAMPLE_COLUMNS = ("target", "stage", "concurrency", "start_s", "latency_ms", "ok", "phase",
                  "cold")


class ResultFileError(ValueError):
    """A result file is missing, unreadable or of another schema version."""


class LatencySummary(TypedDict):
    """Milliseconds, over successful requests sent in the window (nearest-rank percentiles)."""

    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    min: float
    max: float
    mean: float


class StageResult(TypedDict):
    concurrency: int
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
        "cold": (np.array(cols["cold"], dtype=int).astype(bool) if "cold" in cols
                 else np.zeros(len(rows), dtype=bool)),
    }
