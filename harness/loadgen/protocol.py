"""The contract between the orchestrator and the load-generator process.

The orchestrator (:mod:`harness.loadgen.launch`) writes a plan (``plan.json``) and starts
``python -m harness.loadgen.driver`` (or :mod:`harness.loadgen.swarm.master`) on it; the driver
prints progress events on stdout, writes each finished stage to ``partial.json`` as it
goes, its samples beside it (``stage-N.npz``), and the whole result to ``result.json``.
This module holds what both sides must agree on and nothing that imports Locust:
the file names, the exit codes, the time budgets, the plan's typed parts, the stage as
the load generator reports it (:class:`StageReport`) and as the orchestrator reads it back
with its samples (:class:`RawStage`). It imports nothing else of deploybench's but the
scenario, so every module of either side may import it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np

from reports.stageblocks import LocustCrossCheck, WindowResult
from scenarios.catalogue import Scenario

#: The plan the orchestrator writes, and the driver's whole result.
PLAN_FILE = "plan.json"
RESULT_FILE = "result.json"
#: The stages measured so far, rewritten after each: what is left if the driver dies
#: (harness.loadgen.launch reads it).
PARTIAL_FILE = "partial.json"
EXIT_PARITY = 3
#: How long the master waits for workers started elsewhere to connect.
REMOTE_CONNECT_TIMEOUT_S = 300.0
#: Beyond the timeline's own length, what spawning users at the segment edges may take.
SPAWN_SLACK_S = 10.0
#: A last interval of a timeline's series shorter than this share of sample_s joins the
#: one before (the timeline ends a few ms after its planned length).
RAGGED_END = 0.05


@dataclass(frozen=True)
class Timing:
    """How every stage of a run is timed and judged, from the scenario (its keys are the
    scenario's; see scenarios/catalogue.py): the plan carries it as ``timing``."""

    warmup_s: float
    #: The warm-up's upper bound: it waits for every user's first answer up to this.
    warmup_max_s: float
    window_s: float
    #: A window goes on past window_s, up to this, until it holds its share of the
    #: requests p99 needs (the scenario's window_max_s, else window_s).
    window_max_s: float
    cooldown_s: float
    drain_timeout_s: float
    stability_windows: int
    stability_tolerance: float
    max_windows: int
    max_error_rate: float
    #: Open loop: the arrival process, the most requests in flight, when a send is late,
    #: and the schedule's seed.
    arrival: str
    max_inflight: int
    late_tolerance_ms: float
    seed: int
    #: With a metrics_url in the load spec: a scrape every this many seconds during a
    #: stage, besides the two at its edges (harness.loadgen.scrape).
    scrape_interval_s: float = 5.0

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> Timing:
        return cls(warmup_s=scenario.warmup_s,
                   warmup_max_s=max(scenario.warmup_max_s, scenario.warmup_s),
                   window_s=scenario.window_s, window_max_s=scenario.longest_window_s,
                   cooldown_s=scenario.cooldown_s,
                   drain_timeout_s=scenario.drain_timeout_s,
                   stability_windows=scenario.stability_windows,
                   stability_tolerance=scenario.stability_tolerance,
                   max_windows=scenario.max_windows, max_error_rate=scenario.max_error_rate,
                   arrival=scenario.arrival, max_inflight=scenario.max_inflight,
                   late_tolerance_ms=scenario.late_tolerance_ms, seed=scenario.seed,
                   scrape_interval_s=scenario.scrape_interval_s)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Timing:
        """The plan's ``timing``; a key missing or unknown is a driver/orchestrator
        mismatch, raised at once rather than found mid-stage."""
        return cls(**doc)


@dataclass(frozen=True)
class Segment:
    """One segment of a timeline: this many users for this long."""

    users: int
    seconds: float
    label: str


@dataclass(frozen=True)
class TimelinePlan:
    """A timeline stage (spike, soak): its segments back to back, the RSS read every
    ``sample_s``."""

    segments: tuple[Segment, ...]
    sample_s: float


@dataclass(frozen=True)
class SweepPlan:
    """An adaptive concurrency sweep: these levels in turn, until Model Analyzer's
    stopping rule (``min_gain``, ``patience``) or the objective stops it."""

    levels: tuple[int, ...]
    min_gain: float
    patience: int


@dataclass(frozen=True)
class Program:
    """The stages of one trial, in order: fixed closed-loop levels, a sweep, open-loop
    rates, rates at fractions of the capacity measured, a timeline; run ``trials``
    times. The plan carries it as ``program``."""

    levels: tuple[int, ...]
    sweep: SweepPlan | None
    rates: tuple[float, ...]
    fractions: tuple[float, ...]
    #: The p99 a sweep stops past and the capacity is taken within (None: none).
    slo_p99_ms: float | None
    max_error_rate: float
    trials: int
    timeline: TimelinePlan | None

    @classmethod
    def from_scenario(cls, scenario: Scenario, trials: int, slo_p99_ms: float | None
                      ) -> Program:
        sweep = scenario.sweep
        return cls(
            levels=tuple(scenario.concurrency),
            sweep=None if sweep is None else SweepPlan(tuple(sweep.levels()), sweep.min_gain,
                                                       sweep.patience),
            rates=tuple(scenario.rate), fractions=tuple(scenario.rate_fractions),
            slo_p99_ms=slo_p99_ms, max_error_rate=scenario.max_error_rate, trials=trials,
            timeline=None if not scenario.timeline else TimelinePlan(
                tuple(Segment(s.users, s.seconds, s.name(i))
                      for i, s in enumerate(scenario.timeline)), scenario.sample_s))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Program:
        sweep, timeline = doc["sweep"], doc["timeline"]
        return cls(
            levels=tuple(doc["levels"]),
            sweep=None if sweep is None else SweepPlan(tuple(sweep["levels"]),
                                                       sweep["min_gain"], sweep["patience"]),
            rates=tuple(doc["rates"]), fractions=tuple(doc["fractions"]),
            slo_p99_ms=doc["slo_p99_ms"], max_error_rate=doc["max_error_rate"],
            trials=doc["trials"],
            timeline=None if timeline is None else TimelinePlan(
                tuple(Segment(**seg) for seg in timeline["segments"]), timeline["sample_s"]))


def points(span_s: float, sample_s: float) -> int:
    """How many points the series of a ``span_s`` timeline has."""
    return max(1, math.ceil(span_s / sample_s - RAGGED_END)) if span_s > 0 else 0


def timeline_budget_s(scenario: Scenario) -> float:
    """The longest the scenario's timeline stage may take (0 without one)."""
    if not scenario.timeline:
        return 0.0
    return (max(scenario.warmup_max_s, scenario.warmup_s)
            + sum(s.seconds for s in scenario.timeline) + scenario.cooldown_s
            + scenario.drain_timeout_s + SPAWN_SLACK_S * len(scenario.timeline))


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything the orchestrator hands the load generator (``plan.json``), read back
    whole by the load generator's process; the master sends it on to its workers
    (:meth:`for_workers`)."""

    #: The target's load spec (targets.base.LoadSpec, bodies base64 as ``body_b64``), with
    #: the open loop's in-flight bound and each example's expected answer shape.
    spec: dict[str, Any]
    timing: Timing
    program: Program
    loadgen_cpus: tuple[int, ...]
    #: Locust worker processes on this machine (1: none, one process), workers started
    #: elsewhere that the master waits for, and where it listens for them (HOST:PORT).
    loadgen_workers: int = 1
    remote_workers: int = 0
    master: str | None = None
    #: The run's last job: workers started by hand exit after it.
    final: bool = True
    target: str = "target"
    #: Where the workers' logs go (None: beside the plan).
    log_dir: str | None = None
    #: In-process: the predictions its parity is checked against, per example
    #: ({"label", "probabilities"}); None for the other targets.
    reference: list[list[dict[str, Any]]] | None = None

    def for_workers(self) -> Plan:
        """The plan as a worker needs it (the parity reference stays with the master)."""
        return dataclasses.replace(self, reference=None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(timing=self.timing.to_json(), program=self.program.to_json(),
                   loadgen_cpus=list(self.loadgen_cpus))
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Plan:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in doc.items() if k in known}
        fields.update(timing=Timing.from_json(doc["timing"]),
                      program=Program.from_json(doc["program"]),
                      loadgen_cpus=tuple(doc["loadgen_cpus"]))
        return cls(**fields)


class QuickFigures(TypedDict):
    """The load generator's own figures of a stage's window, for the sweep's stopping rule
    and the capacity (the orchestrator recomputes every figure from the samples)."""

    requests: int
    ok_requests: int
    #: Successful answers per second of window.
    rps: float
    p99_ms: float | None
    error_rate: float
    #: The verdict's closed-loop rules on these figures (a capacity comes from a VALID stage).
    valid: NotRequired[bool]
    #: The load generator's CPU was above its limit: it, not the target, set the figures.
    loadgen_busy: NotRequired[bool]


@dataclass(frozen=True, kw_only=True)
class StageReport:
    """One stage as the load generator reports it: written to ``partial.json`` and
    ``result.json`` (:meth:`to_json`), its raw samples in ``stage-N.npz`` beside them
    (``samples``); the orchestrator reads it back whole (:meth:`from_json`,
    :func:`read_raw_stage`). Defined once, here, for both sides."""

    # -- the load ------------------------------------------------------------------------
    #: "closed", "open" or "timeline".
    mode: str = "closed"
    #: Which repetition of the stage list (``--trials``), from 0.
    trial: int = 0
    #: Closed loop: the users. Open loop and timeline: None (see ``rate``, ``timeline``).
    concurrency: int | None
    #: Open loop: the offered rate (req/s), its arrival process, the fraction of the
    #: measured capacity it was (rate_fractions), that capacity, the in-flight bound and
    #: how late a send may be before it counts as late.
    rate: float | None = None
    arrival: str | None = None
    fraction: float | None = None
    capacity_rps: float | None = None
    max_inflight: int | None = None
    late_tolerance_ms: float | None = None
    #: A step of an adaptive sweep, and why the sweep stopped there (its last step).
    sweep: bool = False
    sweep_stop: str | None = None

    # -- the measurement -------------------------------------------------------------------
    #: The reported window (the kept measurement windows), wall clock.
    window_start: float
    window_end: float
    #: The measurement windows (dicts of analysis.validity.Window), how many are reported
    #: (the last ones), whether those agreed, and if not, how they differed.
    windows: list[WindowResult] = field(default_factory=list)
    windows_kept: int = 1
    stable: bool = True
    instability: str | None = None
    #: The warm-up as it ran (it waits for every user's first answer), and whether every
    #: user did have one before ``warmup_max_s``.
    warmup_s: float | None = None
    warmup_complete: bool = True
    #: The run was interrupted during this stage: its figures cover the time it measured
    #: (the last window cut short), not a finished stage.
    interrupted: bool = False
    #: Every request was answered before the drain timeout.
    drained: bool = True
    #: Requests sent in the window still unanswered when the drain timed out (they are
    #: also failed samples, with the time waited as a lower bound of their latency).
    truncated: int
    #: Requests given up on at the drain timeout, whenever they were sent (a user stuck
    #: since the warm-up lowers the stage's real concurrency without failing in-window).
    unanswered: int
    #: Open loop: arrivals due in the window never sent before the stage ended.
    unsent: int = 0
    #: The stage's raw samples: the ``stage-N.npz`` beside this report ("" when none).
    samples: str = ""
    #: The load generator's quick figures (None where none were computed: simulated).
    figures: QuickFigures | None = None
    #: Locust's own statistics of the window, as a cross-check ({} where none).
    locust: LocustCrossCheck = field(default_factory=LocustCrossCheck)
    #: Failed requests by kind.
    error_kinds: dict[str, int] = field(default_factory=dict)
    #: With --loadgen-workers: how many of the samples each worker recorded.
    worker_samples: list[int] | None = None

    # -- the target and the load generator's resources -----------------------------------
    target_cpu_percent: float | None
    #: None for a target on another machine (--endpoint): not measured.
    target_cpu_s: float | None
    loadgen_cpu_percent: float | None
    loadgen_cpu_s: float
    target_rss_mb: float | None
    target_pss_mb: float | None
    target_peak_rss_mb: float | None = None
    #: A target process died or appeared during the stage: its CPU figures are incomplete.
    target_processes_changed: bool = False
    #: When the stage started, and when (wall clock) the target's main process was found
    #: dead during it, with the PIDs found dead.
    stage_started_at: float | None = None
    target_died_at: float | None = None
    dead_pids: list[int] = field(default_factory=list)
    #: A timeline stage (mode "timeline"; see harness.loadgen.timeline): its sample_s, its
    #: segments as run (users, seconds, label, start, end wall clock, CPU figures) and
    #: the target's RSS read every sample_s ({"t", "rss_mb", "users"}).
    timeline: dict[str, Any] | None = None
    #: With a metrics_url in the load spec (run --metrics): the target's own metrics
    #: scraped just before the stage's users started and right after its drain
    #: (``before``/``after``, targets.monitoring.Scrape.to_json()), ``scrapes`` made in
    #: all (those every scrape_interval_s between included), and ``error`` when one
    #: failed (harness.loadgen.scrape.StageScraper.report). None: metrics off.
    target_metrics: dict[str, Any] | None = None

    def quick(self) -> QuickFigures:
        """The load generator's quick figures (a stage it ran always has them)."""
        if self.figures is None:
            raise ValueError("this stage has no quick figures")
        return self.figures

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(StageReport)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageReport:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True, kw_only=True)
class RawStage(StageReport):
    """A stage as the orchestrator reads it back: the report and its raw samples, one
    array entry per request (sent in the warm-up, the windows or the cool-down)."""

    start_s: np.ndarray
    latency_ms: np.ndarray
    ok: np.ndarray
    #: True where the target marked the answer as a cold start (empty: none marked).
    cold: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: Open loop: ms each request went out after its intended time; True where it waited
    #: for a free in-flight slot (empty in closed loop).
    send_delay_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    queued: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def cold_flags(self) -> np.ndarray:
        return self.cold if len(self.cold) == len(self.ok) else np.zeros(len(self.ok), bool)

    def send_delays(self) -> np.ndarray:
        n = len(self.ok)
        return self.send_delay_ms if len(self.send_delay_ms) == n else np.zeros(n)

    def queued_flags(self) -> np.ndarray:
        n = len(self.ok)
        return self.queued if len(self.queued) == n else np.zeros(n, dtype=bool)

    @property
    def measure_start(self) -> float:
        """When the first measurement window opened (the warm-up's end)."""
        return float(self.windows[0]["start"]) if self.windows else self.window_start

    def phases(self) -> np.ndarray:
        """Each sample's phase by send time: warmup, discarded (a measurement window
        before the ones that agreed), measure or cooldown."""
        out = np.full(len(self.start_s), "measure", dtype=object)
        out[self.start_s < self.window_start] = "discarded"
        out[self.start_s < self.measure_start] = "warmup"
        out[self.start_s >= self.window_end] = "cooldown"
        return out


#: The sample columns of ``stage-N.npz``.
SAMPLE_ARRAYS = ("start_s", "latency_ms", "ok", "cold", "send_delay_ms", "queued")


def read_raw_stage(work_dir: Path, stage: dict[str, Any]) -> RawStage:
    """A stage of ``result.json``/``partial.json`` with its samples, from ``work_dir``."""
    report = StageReport.from_json(stage)
    with np.load(work_dir / report.samples) as data:
        arrays = {k: data[k] for k in SAMPLE_ARRAYS}
    return RawStage(**{f.name: getattr(report, f.name)
                       for f in dataclasses.fields(StageReport)}, **arrays)
