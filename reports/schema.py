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
* 4 -- the decision report: a stage's ``latency_cdf`` (its latency distribution sampled
  every percent and at the tail) and each window's ``p99_ms``; a target's ``codec``
  (the encoding's encode/decode cost, timed in the harness); metadata ``monthly_requests``,
  ``endpoints`` and ``loadgen_workers``, a stage's ``worker_samples``, and prices for an
  always-on container. All are additions: a version-3 file loads with them absent.
  Added since, also optional: a run's ``stopped_by``, a stage's ``target_died_at``, metadata
  ``loadgen_remote_workers``, a target's ``loadgen.workers``; for ``run --encodings``,
  metadata ``encodings`` (the encodings requested, a list) and ``results_planned``, and a
  target's ``deployment`` (what was deployed: ``flask`` for the result ``flask-binary``)
  and ``encoding`` (its requests on the wire: json, binary, protobuf; null in-process).
  Late version-4 files may also hold what version 5 names (below): they were written
  under 4 before it was bumped.
* 5 -- timeline stages and the encoding's path, which late version-4 files already held
  without a version to say so (a reader of version 4 as first released cannot describe a
  timeline stage's load; version 5 makes such a reader refuse the file instead). A
  stage of ``mode`` "timeline" (scenario ``timeline``/``sample_s``; ``concurrency`` null,
  no ``windows``) with its ``timeline`` block: ``sample_s``, ``stability``, per segment
  its figures, a ``series`` every ``sample_s`` and the target's ``memory`` growth (see
  harness.loadgen.timeline and reports.stageblocks.TimelineBlock). A target's ``codec.on_path_ms``
  (always present in a codec block now): the encoding steps on the measured path, once
  the load users decoded every answer. Upgrading a version-4 file keeps its timeline
  stages as they are (their shape has not changed) and fills a missing ``on_path_ms``
  with ``request_decode_ms + response_encode_ms``: before the users decoded answers, the
  server's decode and encode were the only encoding steps on the measured path. Every
  nested block is typed in reports.stageblocks and reports.runblocks. Added since, also
  optional: a target description's ``ray_version`` (rayserve).
* 6 -- dynamic batching (``run --batching``): every stage has ``batching``, the forward
  passes a batched result's servers made in its kept windows (reports.stageblocks.
  BatchingBlock: passes by requests served, their count, requests and mean size), None
  for an unbatched result; a target's ``batching`` (its batcher's settings as text,
  ``max_batch=16,max_wait_ms=2``, or None; batched results are named ``NAME+batch``)
  and metadata ``batching`` (the option as given, or None). Upgrading a version-5 file
  fills each with None: nothing was batched before. Added since, also optional (issue
  21): prices for provisioned concurrency and Managed Instances and each way to pay's
  date (``provisioned_*``, ``managed_*``, ``container_as_of``; reports.pricing fills
  them); the scenario's ``window_max_s`` and ``lambda_memory_mb``; results ``lambda-MB``,
  one per memory size, each with ``deployment`` "lambda". Also optional (issue 22,
  monitoring): a target's ``monitoring`` ("off", "metrics", "log", "metrics+log"; absent
  means off) and, when it logged predictions, ``prediction_log`` (folder and rows); a
  stage's ``target_metrics``, the target's own count and time beside the load
  generator's (reports.stageblocks.TargetMetricsBlock).

Older files load: :func:`upgrade` brings them to this version in memory, filling what
was not measured then with ``None`` (or, for a verdict, INVALID with the reason), and
records ``upgraded_from``. ``deploybench upgrade RUN_DIR`` writes the upgraded file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np

from reports.runblocks import (
    BundleInfo,
    CodecCost,
    ColdStarts,
    LoadgenInfo,
    Metadata,
    Prices,
    Redeploys,
    ScenarioBlock,
    TargetDescription,
)
from reports.stageblocks import (
    AllMeasured,
    BatchingBlock,
    LatencyCdf,
    LatencySummary,
    LocustCrossCheck,
    OpenLoopBlock,
    PlatformSummary,
    TargetMetricsBlock,
    TimelineBlock,
    WindowResult,
)

SCHEMA_VERSION = 6
#: The oldest version :func:`upgrade` reads.
OLDEST_SCHEMA_VERSION = 1
RUN_FILE = "run.json"
SAMPLES_FILE = "samples.csv.gz"
SAMPLE_COLUMNS = ("target", "stage", "concurrency", "start_s", "latency_ms", "ok", "phase",
                  "cold", "send_delay_ms")


class ResultFileError(ValueError):
    """A result file is missing, unreadable or of another schema version."""


class StageResult(TypedDict):
    #: "closed" (users in a loop), "open" (arrivals at a rate; see ``open_loop``) or
    #: "timeline" (segments of users back to back; see ``timeline``).
    mode: str
    #: Which repetition of the stage list this is (``--trials``), from 0.
    trial: int
    #: Closed loop: concurrent users. Open loop: None.
    concurrency: int | None
    #: The verdict: VALID when ``reasons`` is empty (harness.loadgen.analysis.validity: the rules).
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
    #: The same latencies as a distribution (LatencyCdf; schema 4).
    latency_cdf: NotRequired[LatencyCdf | None]
    #: Successful requests the target marked as cold starts (Lambda), and the latency of
    #: warm and cold ones apart (None when none was cold).
    cold_requests: NotRequired[int]
    latency_warm_ms: NotRequired[LatencySummary | None]
    latency_cold_ms: NotRequired[LatencySummary | None]
    #: The serving platform's own account of the window (Lambda: REPORT records).
    platform: NotRequired[PlatformSummary]
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
    #: The measurement windows (WindowResult), of which the last ``windows_kept`` are the
    #: ones reported, and whether those agreed.
    stable: bool
    windows: list[WindowResult]
    windows_kept: int
    #: When windows were discarded as still settling: everything measured after the
    #: warm-up, them included, with its slowest request (AllMeasured).
    all_measured: NotRequired[AllMeasured]
    #: With --loadgen-workers: each worker's share of the stage's samples (they sum to
    #: the stage's sample count in samples.csv.gz).
    worker_samples: NotRequired[list[int]]
    #: When (epoch seconds) the target's main process was found dead during this stage;
    #: the stage is INVALID and was the target's last.
    target_died_at: NotRequired[float]
    #: A step of a sweep, and on its last step why the sweep stopped.
    sweep: NotRequired[bool]
    sweep_stop: NotRequired[str | None]
    #: Open-loop stages: the schedule and what became of it (OpenLoopBlock); the stage's
    #: latency_ms counts from the intended send time.
    open_loop: NotRequired[OpenLoopBlock]
    #: Timeline stages (schema 5): segments, a series every sample_s and the target's
    #: memory growth (TimelineBlock). The stage's own figures cover the whole timeline.
    timeline: NotRequired[TimelineBlock]
    #: A batched result's forward passes in the kept windows, by requests served
    #: (BatchingBlock; schema 6); None unbatched.
    batching: BatchingBlock | None
    #: Errors by kind over the whole stage (warm-up and cool-down included).
    error_kinds: dict[str, int]
    window_start: float
    window_end: float
    #: Locust's own (bucketed) figures for the window: a cross-check, not the source.
    locust: LocustCrossCheck
    #: run --metrics: the target's own count and latency against the load generator's.
    target_metrics: NotRequired[TargetMetricsBlock | None]


class ParityResult(TypedDict):
    ok: bool
    examples: int
    max_abs_diff: float
    reference: str


class TargetResult(TypedDict):
    name: str
    status: str  # "ok" | "failed"
    error: str | None
    describe: TargetDescription
    parity: ParityResult | None
    stages: list[StageResult]
    loadgen: LoadgenInfo
    #: The scenario's cold starts of this target, if it asked for any.
    cold_starts: NotRequired[ColdStarts]
    #: Scenario redeploys: new model version to first good prediction (runner._redeploys).
    redeploys: NotRequired[Redeploys]
    #: The wire encoding's cost for one example request, timed in the harness (ms): each
    #: step, the total and the steps on the measured path (CodecCost; schema 4,
    #: ``on_path_ms`` from 5; None in-process).
    codec: NotRequired[CodecCost | None]
    #: What was deployed (``flask`` for the result ``flask-binary``; see
    #: harness.encodings) and its requests' encoding on the wire: "json", "binary",
    #: "protobuf", or None in-process. Absent before ``run --encodings`` existed.
    deployment: NotRequired[str]
    encoding: NotRequired[str | None]
    #: Its server's batcher settings (``max_batch=16,max_wait_ms=2``) for a result
    #: ``NAME+batch`` of ``run --batching``; None unbatched (schema 6).
    batching: NotRequired[str | None]
    #: Its monitoring mode (off, metrics, log, metrics+log; harness.monitoring), and for
    #: a logging result its prediction log once its target stopped.
    monitoring: NotRequired[str]
    prediction_log: NotRequired[PredictionLogBlock]


class PredictionLogBlock(TypedDict):
    #: The log's folder, relative to the run folder; rows logged (None: unreadable).
    dir: str
    rows: int | None
    error: str | None


def deployment(target: TargetResult) -> str:
    """What a result measured: ``flask`` for ``flask-json`` (its name in older files)."""
    return target.get("deployment") or target["name"]


def simulated_targets(run: RunDoc) -> list[str]:
    """The run's test targets (``--targets fake``): a fixed service time under a simulated
    load, no model and no server. Their figures must never pass for a measurement."""
    return [t["name"] for t in run["targets"]
            if (t.get("describe") or {}).get("runtime") == "simulated"]


class RunDoc(TypedDict):
    schema_version: int
    #: "running" while targets are measured, then "complete"; "partial" if cut short.
    status: str
    #: A partial run: why it stopped early, in words.
    stopped_by: NotRequired[str]
    metadata: Metadata
    scenario: ScenarioBlock
    #: The prices cost estimates used (dated defaults or the user's file).
    prices: NotRequired[Prices]
    bundle: BundleInfo
    targets: list[TargetResult]
    samples_file: str
    notes: NotRequired[list[str]]
    #: Set when the file was written by an older deploybench and upgraded on loading.
    upgraded_from: NotRequired[int]


def load_run(path: Path) -> RunDoc:
    """Read ``run.json`` from a run folder (or the file itself), upgraded to this version."""
    file = path / RUN_FILE if path.is_dir() else path
    if not file.exists():
        raise ResultFileError(
            f"no {RUN_FILE} in {path}. Point at a folder written by `deploybench run`"
        )
    return parse_run(file.read_bytes(), str(file))


def parse_run(text: str | bytes, where: str) -> RunDoc:
    """A run document from its JSON text, upgraded; ResultFileError naming ``where``."""
    try:
        doc = json.loads(text)
    except ValueError as exc:  # invalid JSON, or bytes that are not UTF-8
        raise ResultFileError(f"{where} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ResultFileError(f"{where} is not a deploybench result (not a JSON object)")
    try:
        return upgrade(doc)
    except ResultFileError as exc:
        raise ResultFileError(f"{where}: {exc}") from None


def upgrade(doc: dict[str, Any]) -> RunDoc:
    """Bring a run document of any version this deploybench knows to ``SCHEMA_VERSION``.

    Each step fills what the older version did not record; nothing is invented: a figure
    that was not measured stays ``None``, and a stage measured before verdicts existed is
    INVALID with that reason rather than silently VALID.
    """
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultFileError(f"no schema_version ({version!r}): not a deploybench result")
    if version > SCHEMA_VERSION:
        raise ResultFileError(
            f"schema_version {version} is newer than this deploybench reads "
            f"({SCHEMA_VERSION}). Read it with the deploybench that wrote it (its version is "
            f"in metadata.deploybench and metadata.git_commit), or upgrade this one")
    if version < OLDEST_SCHEMA_VERSION:
        raise ResultFileError(f"schema_version {version} is not one deploybench ever wrote")
    original = version
    for step in range(version, SCHEMA_VERSION):
        for target in doc.get("targets", []):
            for stage in target.get("stages", []):
                _UPGRADE_STAGE[step](stage, step)
            if step in _UPGRADE_TARGET:
                _UPGRADE_TARGET[step](target)
        if step in _UPGRADE_DOC:
            _UPGRADE_DOC[step](doc)
    doc["schema_version"] = SCHEMA_VERSION
    if original != SCHEMA_VERSION:
        doc["upgraded_from"] = original
    run: RunDoc = doc  # type: ignore[assignment]
    return run


def _doc_1_to_2(doc: dict[str, Any]) -> None:
    doc.setdefault("metadata", {}).setdefault("smt_shared_cores", [])


def _doc_2_to_3(doc: dict[str, Any]) -> None:
    scenario = doc.setdefault("scenario", {})
    if "window_s" not in scenario and "duration_s" in scenario:
        scenario["window_s"] = scenario.pop("duration_s")


def _doc_5_to_6(doc: dict[str, Any]) -> None:
    doc.setdefault("metadata", {}).setdefault("batching", None)


def _target_5_to_6(target: dict[str, Any]) -> None:
    target.setdefault("batching", None)


def _stage_1_to_2(stage: dict[str, Any], step: int) -> None:
    # Version 1 counted unanswered requests apart from requests and errors.
    stage.setdefault("unanswered", stage.get("truncated", 0))
    for key in ("target_peak_rss_mb", "loadgen_cpu_ms_per_request"):
        stage.setdefault(key, None)
    stage.setdefault("target_processes_changed", False)


def _stage_2_to_3(stage: dict[str, Any], step: int) -> None:
    stage.setdefault("mode", "closed")
    stage.setdefault("trial", 0)
    stage.setdefault("stable", False)
    stage.setdefault("windows", [])
    stage.setdefault("windows_kept", 0)
    if "valid" not in stage:
        stage["valid"] = False
        stage["reasons"] = [f"not checked: measured by a deploybench that wrote schema "
                            f"{step}, before validity verdicts existed"]
    if stage.get("latency_ms"):
        stage["latency_ms"].setdefault("p999", None)


def _stage_3_to_4(stage: dict[str, Any], step: int) -> None:
    stage.setdefault("latency_cdf", None)


def _stage_4_to_5(stage: dict[str, Any], step: int) -> None:
    # A timeline stage written under version 4 has version 5's shape: nothing to change,
    # and nothing to fill in the closed- and open-loop stages either.
    pass


def _stage_5_to_6(stage: dict[str, Any], step: int) -> None:
    # Nothing was batched before version 6.
    stage.setdefault("batching", None)


def _codec_4_to_5(target: dict[str, Any]) -> None:
    # Before the load users decoded every answer (and on_path_ms existed), the measured
    # path held the server's two steps: its decode of the request, its encode of the answer.
    codec = target.get("codec")
    if codec and codec.get("on_path_ms") is None:
        codec["on_path_ms"] = float(codec.get("request_decode_ms") or 0.0) + float(
            codec.get("response_encode_ms") or 0.0)


_UPGRADE_STAGE = {1: _stage_1_to_2, 2: _stage_2_to_3, 3: _stage_3_to_4, 4: _stage_4_to_5,
                  5: _stage_5_to_6}
#: Steps that change a target's own keys, and the document's, by the version upgraded from.
_UPGRADE_TARGET = {4: _codec_4_to_5, 5: _target_5_to_6}
_UPGRADE_DOC = {1: _doc_1_to_2, 2: _doc_2_to_3, 5: _doc_5_to_6}


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """The samples file as columns. A run killed while appending a stage leaves that
    stage's gzip member cut short: the complete rows before the cut are read."""
    file = path / SAMPLES_FILE if path.is_dir() else path
    rows: list[list[str]] = []
    with gzip.open(file, "rt") as fh:
        header = fh.readline().strip().split(",")
        with contextlib.suppress(EOFError):  # the cut: keep the rows before it
            for line in fh:
                if line.endswith("\n"):
                    rows.append(line.rstrip("\n").split(","))
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
