"""Scenario files: named YAML documents under ``scenarios/`` (or a path to your own).

A scenario is a list of stages with the same timing each. A stage is either

* **closed loop**: N concurrent users, each sending its next request as soon as the last
  one answers (``concurrency: [1, 4, 16]``, or ``sweep:`` to raise N until throughput
  stops growing or p99 passes the SLO), or
* **open loop**: requests sent at a target rate whatever the answers do, Poisson or
  evenly spaced, each request's latency counted from the moment it was *meant* to be sent
  (``rate: [100, 200]`` in requests/s, or ``rate_fractions: [0.5, 0.9]`` of the capacity
  the closed-loop stages just measured).

Every stage runs: a warm-up that is discarded (at least ``warmup_s`` and until every user
has had an answer, at most ``warmup_max_s``); measurement windows of ``window_s`` that
repeat until the last ``stability_windows`` agree within ``stability_tolerance`` on
throughput and median latency and hold enough requests for p99, at most ``max_windows``
(perf_analyzer's rule); a cool-down during which the load continues so requests sent in
the window finish under the same load; and a drain that waits for the last in-flight
requests. Only the last ``stability_windows`` windows are reported.

``cold_starts: N`` first measures N cold starts of each target (from nothing to its
first good answer), before any stage. ``redeploys: N`` then measures N redeploys of each:
the time from a new model version being handed to the deployment to its first good
prediction from that version, the old version serving until then (a served target: a
new server beside the old one, then the old stopped; Lambda: the function's code
updated, so its next invocation is a new environment's; in-process: the application
loading the new model in its running process).

A window lasts ``window_s``; with ``window_max_s`` (longer) it goes on until it holds its
share of the requests p99 needs (662 over the kept windows, so 221 each of 3), at most
``window_max_s``: a slow target measures long windows, a fast one short ones, and every
stage still ends. ``lambda_memory_mb: [512, 1769]`` is the list of Lambda memory sizes
``run`` compares when lambda is measured and ``--lambda-memory-mb`` is not given
(``power``); ``monitoring: [off, metrics, metrics+log]`` the monitoring modes it compares
when ``--monitoring`` is not given (``monitoring``). With metrics on, the load generator
scrapes them at each stage's edges and every ``scrape_interval_s`` (default 5 s) between.

A **timeline** stage (``timeline:``, after the others) is a transient by design: a list
of segments ``{users: N, seconds: S, label: text}`` run back to back in one Locust run,
the number of closed-loop users changing at once at each segment's edge (no warm-up or
drain between segments; only a warm-up at the first segment's users before it and a
cool-down and drain after it). It records each segment's figures (requests, req/s, p50,
p99, max, error rate; Lambda's cold starts) and a series every ``sample_s`` seconds
(users, req/s, p50, p99, errors, the target's resident memory), and from that memory
its growth over the timeline (MB, and a least-squares slope in MB/min). No stability rule
applies to it (the load changes on purpose); its verdict checks each segment for enough
requests for p99, its error rate and the load generator's CPU, the warm-up, and that
the target stayed alive. ``spike`` (baseline, burst, baseline) shows how a deployment
absorbs a sudden burst: Lambda scales out (cold starts in the burst), the others queue
(latency up). ``soak`` (ten minutes of steady load) shows memory growth per target.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import yaml

from scenarios import monitoring
from targets.awslambda.shape import MAX_MEMORY_MB, MIN_MEMORY_MB

HERE = Path(__file__).resolve().parent

ARRIVALS = ("poisson", "constant")


class ScenarioError(ValueError):
    """A scenario cannot be found or does not parse; the message names the key."""


@dataclass(frozen=True)
class Sweep:
    """Closed-loop concurrency from ``start``, times ``factor`` each step, up to ``max``,
    stopped early by Model Analyzer's rule: when the best of the last ``patience`` steps
    is less than ``min_gain`` above the first of them, or p99 passes the SLO."""

    start: int = 1
    factor: float = 2.0
    max: int = 256
    min_gain: float = 0.05
    patience: int = 4

    def levels(self) -> list[int]:
        out = [self.start]
        while True:
            nxt = max(out[-1] + 1, round(out[-1] * self.factor))
            if nxt > self.max:
                return out
            out.append(nxt)


@dataclass(frozen=True)
class Segment:
    """One segment of a timeline: ``users`` closed-loop users for ``seconds``."""

    users: int
    seconds: float
    label: str = ""

    def name(self, index: int) -> str:
        """How the report names it: its label, else its place (from 1)."""
        return self.label or f"segment {index + 1}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    #: Closed-loop stages: the number of concurrent users in each, in order.
    concurrency: tuple[int, ...]
    warmup_s: float
    #: One measurement window; a stage measures stability_windows..max_windows of them.
    window_s: float
    cooldown_s: float
    #: Longest wait for in-flight requests once a stage stops sending.
    drain_timeout_s: float
    #: SHA-256 of the file's bytes: results from an edited scenario are not comparable.
    sha256: str
    path: str
    #: The warm-up goes on past warmup_s until every user has had an answer, up to this.
    warmup_max_s: float = 120.0
    #: Cold starts to measure per target before the stages.
    cold_starts: int = 0
    #: Redeploys (new model version to first good prediction) per target, after them.
    redeploys: int = 0
    #: Stability: the last N windows within the tolerance (max/min - 1), at most M windows.
    stability_windows: int = 3
    stability_tolerance: float = 0.10
    max_windows: int = 10
    #: A stage with a larger share of failed requests is INVALID.
    max_error_rate: float = 0.01
    #: Adaptive closed-loop levels (instead of, or after, ``concurrency``).
    sweep: Sweep | None = None
    #: Open-loop stages at these rates (requests/s) ...
    rate: tuple[float, ...] = ()
    #: ... and at these fractions of the highest throughput the closed-loop stages
    #: measured within the SLO (the target's capacity).
    rate_fractions: tuple[float, ...] = ()
    arrival: str = "poisson"
    #: Open loop: requests in flight at most (connections for HTTP); an arrival that finds
    #: them all busy waits, and its latency still counts from its intended send time.
    max_inflight: int = 256
    #: Open loop: a request sent later than this after its intended time is "late".
    late_tolerance_ms: float = 2.0
    #: Seed of the Poisson arrival times (the same schedule every run).
    seed: int = 0
    #: Latency objective for sweeps (stop once p99 passes it) and capacity; None = none.
    slo_p99_ms: float | None = None
    #: A timeline stage (after the others): these segments back to back in one run.
    timeline: tuple[Segment, ...] = ()
    #: The timeline's series: one point every sample_s seconds.
    sample_s: float = 1.0
    #: A window goes on past window_s, up to this, until it holds its share of the
    #: requests p99 needs; None: every window lasts window_s.
    window_max_s: float | None = None
    #: Lambda memory sizes to compare when --lambda-memory-mb is not given; () none.
    lambda_memory_mb: tuple[int, ...] = ()
    #: Monitoring modes to compare when --monitoring is not given; () none.
    monitoring: tuple[str, ...] = ()
    #: With metrics on, a scrape every this many seconds during a stage (as a
    #: Prometheus job's scrape_interval), besides the two at its edges.
    scrape_interval_s: float = 5.0

    @property
    def has_load(self) -> bool:
        return bool(self.concurrency or self.sweep or self.rate or self.rate_fractions
                    or self.timeline)

    def planned_stages(self) -> int:
        """Stages per trial, counting a sweep at its full length (an upper bound)."""
        sweep = len(self.sweep.levels()) if self.sweep else 0
        return (len(self.concurrency) + sweep + len(self.rate) + len(self.rate_fractions)
                + (1 if self.timeline else 0))

    def peak_concurrency(self) -> int:
        """The most requests this scenario can have in flight at once."""
        levels = list(self.concurrency) + (self.sweep.levels() if self.sweep else [])
        levels += [segment.users for segment in self.timeline]
        if self.rate or self.rate_fractions:
            levels.append(self.max_inflight)
        return max(levels, default=1)

    def stage_s(self) -> float:
        """The shortest a stage can take (a stable first measurement)."""
        return self.warmup_s + self.window_s * self.stability_windows + self.cooldown_s

    @property
    def longest_window_s(self) -> float:
        """The longest one measurement window may last."""
        return self.window_max_s or self.window_s

    def timeline_s(self) -> float:
        """The timeline stage's length (0 without one): warm-up, segments, cool-down."""
        if not self.timeline:
            return 0.0
        return self.warmup_s + sum(s.seconds for s in self.timeline) + self.cooldown_s

    @property
    def estimated_s(self) -> float:
        """Load time per target if every stage settles at once; sweeps counted in full."""
        others = self.planned_stages() - (1 if self.timeline else 0)
        return self.stage_s() * others + self.timeline_s()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["concurrency"] = list(self.concurrency)
        out["rate"] = list(self.rate)
        out["rate_fractions"] = list(self.rate_fractions)
        out["timeline"] = [asdict(s) for s in self.timeline]
        out["lambda_memory_mb"] = list(self.lambda_memory_mb)
        out["monitoring"] = list(self.monitoring)
        return out


DEFAULTS: dict[str, Any] = {
    "cooldown_s": 0.5, "drain_timeout_s": 30.0, "description": "", "warmup_max_s": 120.0,
    "cold_starts": 0, "redeploys": 0, "window_s": 5.0, "stability_windows": 3,
    "stability_tolerance": 0.10,
    "max_windows": 10, "max_error_rate": 0.01, "max_inflight": 256, "late_tolerance_ms": 2.0,
    "sample_s": 1.0, "scrape_interval_s": 5.0,
}
KNOWN_KEYS = {"description", "concurrency", "warmup_s", "window_s", "cooldown_s",
              "drain_timeout_s", "warmup_max_s", "cold_starts", "redeploys",
              "stability_windows",
              "stability_tolerance", "max_windows", "max_error_rate", "sweep", "rate",
              "rate_fractions", "arrival", "max_inflight", "late_tolerance_ms", "seed",
              "slo_p99_ms", "timeline", "sample_s", "window_max_s", "lambda_memory_mb",
              "monitoring", "scrape_interval_s"}
RENAMED = {"duration_s": "'duration_s' is now 'window_s' (one measurement window; a stage "
                         "measures several until they agree)"}
SWEEP_KEYS = {"start", "factor", "max", "min_gain", "patience"}
SEGMENT_KEYS = {"users", "seconds", "label"}


def available() -> dict[str, Path]:
    """Built-in scenarios by name."""
    return {p.stem: p for p in sorted(HERE.glob("*.yaml"))}


def _number(doc: dict[str, Any], key: str, where: str, minimum: float,
            maximum: float | None = None) -> float:
    value = doc.get(key, DEFAULTS.get(key))
    if value is None:
        raise ScenarioError(f"{where}: missing key '{key}'")
    if (isinstance(value, bool) or not isinstance(value, int | float) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise ScenarioError(f"{where}: '{key}' must be a number >= {minimum}{bound} "
                            f"(got {value!r})")
    return float(value)


def _whole(doc: dict[str, Any], key: str, where: str, minimum: int, default: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(f"{where}: '{key}' must be a whole number >= {minimum} "
                            f"(got {value!r})")
    return value


def _numbers(doc: dict[str, Any], key: str, where: str, *, whole: bool, low: float,
             high: float | None = None) -> tuple[Any, ...]:
    values = doc.get(key, [])
    kind = int if whole else (int, float)
    if not isinstance(values, list) or not all(
            isinstance(v, kind) and not isinstance(v, bool) and v >= low
            and (high is None or v <= high) for v in values):
        what = "integers" if whole else "numbers"
        bound = f" and <= {high}" if high is not None else ""
        raise ScenarioError(f"{where}: '{key}' must be a list of {what} >= {low}{bound}")
    return tuple(values if whole else (float(v) for v in values))


def _sweep(doc: dict[str, Any], where: str) -> Sweep | None:
    raw = doc.get("sweep")
    if raw is None:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: 'sweep' must be a mapping of {sorted(SWEEP_KEYS)}")
    unknown = sorted(set(raw) - SWEEP_KEYS)
    if unknown:
        raise ScenarioError(f"{where}: unknown key 'sweep.{unknown[0]}'. "
                            f"Known: {sorted(SWEEP_KEYS)}")
    defaults = Sweep()
    sweep = Sweep(
        start=_whole(raw, "start", f"{where}: sweep", 1, defaults.start),
        factor=_number({"factor": raw.get("factor", defaults.factor)}, "factor",
                       f"{where}: sweep", 1.1),
        max=_whole(raw, "max", f"{where}: sweep", 1, defaults.max),
        min_gain=_number({"min_gain": raw.get("min_gain", defaults.min_gain)}, "min_gain",
                         f"{where}: sweep", 0.0, 1.0),
        patience=_whole(raw, "patience", f"{where}: sweep", 2, defaults.patience),
    )
    if sweep.max < sweep.start:
        raise ScenarioError(f"{where}: 'sweep.max' must be >= 'sweep.start'")
    return sweep


def _timeline(doc: dict[str, Any], where: str) -> tuple[Segment, ...]:
    raw = doc.get("timeline")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{where}: 'timeline' must be a non-empty list of segments "
                            "{users: N, seconds: S, label: text}")
    segments = []
    for i, item in enumerate(raw):
        key = f"timeline[{i}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: '{key}' must be a mapping {{users: N, seconds: S, "
                                "label: text}")
        unknown = sorted(set(item) - SEGMENT_KEYS)
        if unknown:
            raise ScenarioError(f"{where}: unknown key '{key}.{unknown[0]}'. "
                                f"Known: {sorted(SEGMENT_KEYS)}")
        users = item.get("users")
        if isinstance(users, bool) or not isinstance(users, int) or users < 1:
            raise ScenarioError(f"{where}: '{key}.users' must be a whole number >= 1 "
                                f"(got {users!r})")
        seconds = item.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ScenarioError(f"{where}: '{key}.seconds' must be a number > 0 "
                                f"(got {seconds!r})")
        label = item.get("label", "")
        if not isinstance(label, str):
            raise ScenarioError(f"{where}: '{key}.label' must be text (got {label!r})")
        segments.append(Segment(users, float(seconds), label.strip()))
    return tuple(segments)


class _Stages(TypedDict):
    """What a scenario measures, as the Scenario fields of the same names."""

    cold_starts: int
    redeploys: int
    concurrency: tuple[int, ...]
    sweep: Sweep | None
    rate: tuple[float, ...]
    rate_fractions: tuple[float, ...]
    timeline: tuple[Segment, ...]


def _find(name_or_path: str) -> Path:
    """The built-in scenario of that name, else the file at that path."""
    builtins = available()
    if name_or_path in builtins:
        return builtins[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(builtins)
        raise ScenarioError(
            f"unknown scenario ({name_or_path!r}). Choose one of: {known}, or give a YAML path"
        )
    return path


def _settings(raw: bytes, where: str) -> dict[str, Any]:
    """The file's YAML: a mapping of known keys, none of them one since renamed."""
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ScenarioError(f"{where}: must be a mapping of settings")
    for old, message in RENAMED.items():
        if old in doc:
            raise ScenarioError(f"{where}: {message}")
    unknown = sorted(set(doc) - KNOWN_KEYS)
    if unknown:
        raise ScenarioError(f"{where}: unknown key '{unknown[0]}'. Known: {sorted(KNOWN_KEYS)}")
    return doc


def _stages(doc: dict[str, Any], where: str) -> _Stages:
    """The stages to run, each kind read and checked, then checked together."""
    stages = _Stages(
        cold_starts=_whole(doc, "cold_starts", where, 0, 0),
        redeploys=_whole(doc, "redeploys", where, 0, 0),
        concurrency=_numbers(doc, "concurrency", where, whole=True, low=1),
        sweep=_sweep(doc, where),
        rate=_numbers(doc, "rate", where, whole=False, low=0.1),
        rate_fractions=_numbers(doc, "rate_fractions", where, whole=False, low=0.01, high=2.0),
        timeline=_timeline(doc, where),
    )
    _check_stage_kinds(doc, stages, where)
    return stages


def _check_stage_kinds(doc: dict[str, Any], stages: _Stages, where: str) -> None:
    """Something to measure, and no setting that needs a kind of stage not given."""
    closed = stages["concurrency"] or stages["sweep"]
    if not (closed or stages["rate"] or stages["rate_fractions"] or stages["timeline"]
            or stages["cold_starts"] or stages["redeploys"]):
        raise ScenarioError(f"{where}: no stages: give 'concurrency' (a list of integers "
                            ">= 1), 'sweep', 'rate', 'rate_fractions' or 'timeline' (the "
                            "stage lists may all be empty only when 'cold_starts' or "
                            "'redeploys' is set)")
    if "sample_s" in doc and not stages["timeline"]:
        raise ScenarioError(f"{where}: 'sample_s' is the interval of a timeline's series: "
                            "give 'timeline' too, or remove it")
    if stages["rate_fractions"] and not closed:
        raise ScenarioError(f"{where}: 'rate_fractions' are fractions of the capacity the "
                            "closed-loop stages measure: give 'concurrency' or 'sweep' too")


def _arrival(doc: dict[str, Any], where: str) -> str:
    arrival = doc.get("arrival", "poisson")
    if arrival not in ARRIVALS:
        raise ScenarioError(f"{where}: 'arrival' must be one of {list(ARRIVALS)}")
    return str(arrival)


def _description(doc: dict[str, Any], where: str) -> str:
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: 'description' must be text")
    return description.strip()


def _windows(doc: dict[str, Any], where: str) -> tuple[int, int]:
    """stability_windows and max_windows, the most a stage may measure at least the
    number that must agree."""
    stability_windows = _whole(doc, "stability_windows", where, 1, 3)
    max_windows = _whole(doc, "max_windows", where, 1, 10)
    if max_windows < stability_windows:
        raise ScenarioError(f"{where}: 'max_windows' ({max_windows}) must be >= "
                            f"'stability_windows' ({stability_windows})")
    return stability_windows, max_windows


def _window_max_s(doc: dict[str, Any], where: str, window_s: float) -> float | None:
    """window_max_s, if given: at least window_s."""
    if doc.get("window_max_s") is None:
        return None
    longest = _number(doc, "window_max_s", where, 0.1)
    if longest < window_s:
        raise ScenarioError(f"{where}: 'window_max_s' ({longest:g}) must be >= 'window_s' "
                            f"({window_s:g})")
    return longest


def _memory_sizes(doc: dict[str, Any], where: str) -> tuple[int, ...]:
    """lambda_memory_mb: distinct sizes Lambda allows (128 to 10,240 MB)."""
    sizes = _numbers(doc, "lambda_memory_mb", where, whole=True, low=MIN_MEMORY_MB,
                     high=MAX_MEMORY_MB)
    if len(set(sizes)) != len(sizes):
        raise ScenarioError(f"{where}: 'lambda_memory_mb' names a size twice ({list(sizes)})")
    return sizes


def load(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path."""
    path = _find(name_or_path)
    raw = path.read_bytes()
    where = str(path)
    doc = _settings(raw, where)
    stages = _stages(doc, where)
    arrival = _arrival(doc, where)
    description = _description(doc, where)
    slo = doc.get("slo_p99_ms")
    stability_windows, max_windows = _windows(doc, where)
    window_s = _number(doc, "window_s", where, 0.1)
    try:
        modes = monitoring.parse_modes(doc.get("monitoring"))
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    return Scenario(
        name=path.stem,
        description=description,
        **stages,
        warmup_s=_number(doc, "warmup_s", where, 0.0),
        window_s=window_s,
        window_max_s=_window_max_s(doc, where, window_s),
        lambda_memory_mb=_memory_sizes(doc, where), monitoring=modes,
        scrape_interval_s=_number(doc, "scrape_interval_s", where, 0.1),
        cooldown_s=_number(doc, "cooldown_s", where, 0.0),
        drain_timeout_s=_number(doc, "drain_timeout_s", where, 0.1),
        sha256=hashlib.sha256(raw).hexdigest(),
        path=where,
        warmup_max_s=_number(doc, "warmup_max_s", where, 0.0),
        stability_windows=stability_windows,
        stability_tolerance=_number(doc, "stability_tolerance", where, 0.0, 1.0),
        max_windows=max_windows,
        max_error_rate=_number(doc, "max_error_rate", where, 0.0, 1.0),
        arrival=arrival,
        max_inflight=_whole(doc, "max_inflight", where, 1, 256),
        late_tolerance_ms=_number(doc, "late_tolerance_ms", where, 0.0),
        seed=_whole(doc, "seed", where, 0, 0),
        slo_p99_ms=None if slo is None else _number(doc, "slo_p99_ms", where, 0.001),
        sample_s=_number(doc, "sample_s", where, 0.1),
    )
