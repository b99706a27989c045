"""The nested blocks of a stage in ``run.json``, typed: its latency summaries and
distribution, its measurement windows, everything measured, the open-loop schedule, the
platform's account (Lambda REPORT records), Locust's cross-check and the timeline.

:mod:`reports.schema` assembles them into ``StageResult`` and lists in its docstring
what each schema version added; :mod:`reports.runblocks` holds the target's and the
run's blocks. Keys a version added after the block first appeared are ``NotRequired``:
an upgraded older file may lack them.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class LatencySummary(TypedDict):
    """Milliseconds, over successful requests sent in the window (nearest-rank percentiles)."""

    p50: float
    p90: float
    p95: float
    p99: float
    #: None with fewer samples than it needs (analysis.validity.min_requests(0.999)).
    p999: float | None
    min: float
    max: float
    mean: float


class LatencyCdf(TypedDict):
    """A stage's latency distribution (schema 4): ``ms[i]`` is the latency at fraction
    ``p[i]`` of the successful requests (every percent, then the tail)."""

    p: list[float]
    ms: list[float]


class WindowResult(TypedDict):
    """One measurement window (harness.loadgen.analysis.validity.Window): ``start``/``end``
    epoch seconds; requests ``completed`` in it, successfully; its ``rps``; median and p99 (ms, None
    when nothing completed; ``p99_ms`` from schema 4)."""

    start: float
    end: float
    completed: int
    rps: float
    p50_ms: float | None
    p99_ms: NotRequired[float | None]


#: Everything measured after the warm-up, when windows were discarded as still settling
#: (analysis.stats._all_measured): ``from``/``to`` epoch seconds, ``discarded_windows``,
#: ``requests``, ``errors``, ``latency_ms``, and the slowest successful request's latency
#: ``worst_ms``, sent ``worst_at_s`` seconds after the measurement began. (A functional
#: TypedDict: ``from`` is a keyword.)
AllMeasured = TypedDict("AllMeasured", {
    "from": float, "to": float, "discarded_windows": int, "requests": int, "errors": int,
    "latency_ms": LatencySummary | None, "worst_at_s": float | None,
    "worst_ms": float | None,
})


class OpenLoopBlock(TypedDict):
    """An open-loop stage's schedule and what became of it (harness.loadgen.analysis.stats)."""

    #: Requests per second asked for, and the arrival process ("poisson" or "uniform"):
    #: copied from the load generator's stage, which types them optional.
    rate: float | None
    arrival: str | None
    #: With the scenario's rate_fractions: the fraction of ``capacity_rps`` (the
    #: closed-loop capacity found first) this rate is; None for an absolute rate.
    fraction: float | None
    capacity_rps: float | None
    #: Requests allowed in flight at once; past it sends queue.
    max_inflight: int | None
    #: A send later than this (ms) behind its schedule is late; counts of late, queued
    #: and never-sent requests in the window.
    late_tolerance_ms: float | None
    late: int
    queued: int
    unsent: int
    #: Answers per second as they arrived in the kept windows (None without windows).
    completed_rps: float | None
    #: How late sends were (ms), and latency from the actual send (the target's time).
    send_delay_ms: LatencySummary | None
    service_latency_ms: LatencySummary | None


class ScaleOut(TypedDict):
    """Cold starts during the stage's warm-up (new environments for its users)."""

    cold_starts: int
    init_ms: LatencySummary | None
    init_cpu_ms: LatencySummary | None


class PlatformSummary(TypedDict):
    """The serving platform's own account of the window: Lambda REPORT records
    (harness.loadgen.analysis.serverless.summarize_invocations). Durations in ms, memory in MB."""

    #: Invocations received in the window (throttled ones apart), cold and warm.
    invocations: int
    cold: int
    warm: int
    throttled: int
    #: Invocations by outcome ("ok", "error", "timeout", "throttled", ...).
    outcomes: dict[str, int]
    init_ms: LatencySummary | None
    #: Init's CPU time: what Init takes with a CPU of its own.
    init_cpu_ms: NotRequired[LatencySummary | None]
    duration_warm_ms: LatencySummary | None
    duration_cold_ms: LatencySummary | None
    max_memory_used_mb: float | None
    #: The function's configured memory.
    memory_mb: int | None
    environments_max: int
    billed_ms: int
    billed_gb_s: float
    #: USD for the window's invocations, and per million of them, by architecture.
    cost_usd: dict[str, float]
    cost_per_million_usd: dict[str, float]
    scale_out: NotRequired[ScaleOut]
    #: How long thawing a frozen environment took before its event (warm invocations
    #: that were frozen; None: none was).
    thaw_ms: NotRequired[LatencySummary | None]
    #: CPU time a warm invocation used in its environment (all its threads).
    cpu_warm_ms: NotRequired[LatencySummary | None]
    #: The CPUs each environment was held to (memory/1,769, capped by the target CPUs);
    #: None: unthrottled.
    cpu_share: NotRequired[float | None]


class LocustCrossCheck(TypedDict):
    """Locust's own (bucketed) figures for the window: a cross-check, not the source.
    Empty where there is none (in-process, distributed, simulated)."""

    requests: NotRequired[int]
    failures: NotRequired[int]
    rps: NotRequired[float | None]
    avg_ms: NotRequired[float | None]
    #: Locust rounds its percentiles (whole ms below 100 ms).
    p50_ms: NotRequired[float | None]
    p99_ms: NotRequired[float | None]


class TimelineSegment(TypedDict):
    """One segment of a timeline stage, over the requests sent in it."""

    label: str
    users: int
    #: Planned length, actual start (s from the timeline's start) and length (s).
    seconds: float
    start_s: float
    duration_s: float
    requests: int
    ok: int
    errors: int
    error_rate: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    cold_requests: int
    loadgen_cpu_percent: float | None
    target_cpu_percent: float | None


class TimelinePoint(TypedDict):
    """One point of a timeline's series, every ``sample_s``: ``t`` is its end in s from
    the timeline's start; requests completed in it; ``rss_mb`` the target's resident
    memory at its end (None where none was read)."""

    t: float
    users: int | None
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    cold: int
    rss_mb: float | None


class MemoryGrowth(TypedDict):
    """The target's RSS over the measured timeline (MB; the slope by least squares, MB a
    minute). All None, with a ``note``, where it could not be read."""

    readings: int
    start_mb: float | None
    end_mb: float | None
    growth_mb: float | None
    slope_mb_per_min: float | None
    peak_mb: float | None
    note: NotRequired[str]


class TimelineBlock(TypedDict):
    """A timeline stage's own block (schema 5; harness.loadgen.analysis.timeline.summarize)."""

    sample_s: float
    #: Why no stability rule applies, in words.
    stability: str
    segments: list[TimelineSegment]
    series: list[TimelinePoint]
    memory: MemoryGrowth


class BatchingBlock(TypedDict):
    """A batched result's forward passes in the stage's kept measurement windows, from
    its servers' batch logs (targets.batching; harness.loadgen.analysis.batches, schema 6).
    None in the stage of an unbatched result."""

    #: Forward passes by the number of requests each served: {"1": 40, "2": 310, ...}
    #: (keys are strings: JSON's object keys).
    sizes: dict[str, int]
    #: Forward passes, and the requests they served, in the windows.
    batches: int
    requests: int
    #: Requests per forward pass (None: no pass in the windows).
    mean_size: float | None


class TargetMetricsBlock(TypedDict):
    """A stage's ``target_metrics`` (``run --metrics``): the target's own figures between
    the scrapes just before its users started and right after its drain, against the
    load generator's samples of the whole stage (harness.loadgen.analysis.targetmetrics).
    The target's side is None when a scrape failed."""

    target_requests: int | None
    loadgen_requests: int
    count_diff_percent: float | None
    target_errors: int | None
    loadgen_errors: int
    #: Mean time in the target's handler (Lambda: REPORT's Duration) and the round trip.
    target_mean_ms: float | None
    loadgen_mean_ms: float | None
    #: The target's from its histogram's buckets; the load generator's exact.
    target_p99_ms: float | None
    loadgen_p99_ms: float | None
    scrapes: int
    #: Counts within 2% and the target's total time at most the client's x 1.02.
    agrees: bool
    why: str | None
    #: A scrape failed: why (the target's side is then None).
    error: NotRequired[str]
