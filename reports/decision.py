"""The decision: which deployments meet the objective, what each costs, which to choose.

Everything here is computed from ``run.json`` alone, so a report can be re-rendered for
another objective or traffic volume (``deploybench report RUN --slo ... --monthly-requests
...``) without measuring again.

The rules, each stated in the report:

* **Objective** (``--slo``): latency percentiles (default p99 <= 100 ms) and, optionally,
  a peak throughput. A deployment *meets* the latency objective when a VALID stage met
  every latency bound; its **capacity** is the highest throughput of such a stage (on the
  CPUs it was given: one instance). More throughput than that is served by more
  instances, which the cost counts.
* **Common load**: latencies are compared at one load every target ran: the lowest
  open-loop rate they share, else the middle of the closed-loop user counts they share.
* **Cost** at the expected monthly volume (``--monthly-requests``, default 10 million):
  pay-per-request (Lambda) from the platform's billed duration and memory at its least
  loaded stage; always-on (the others) as instances x (vCPUs x vCPU-hour + GB x GB-hour)
  x hours, with as many instances as the volume's average rate (or the objective's peak,
  if higher) needs at the measured capacity, and at least ``container_min_instances``.
* **Ties**: two deployments tie when their cost ranges overlap (the range follows from
  the uncertainty of the capacity, or of the duration that Lambda bills) and their p99 at
  the common load does not differ significantly (Welch's t-test at 5% over trials, with
  ``--trials 3`` or more). One run is not tested: p99s within 10% of each other are
  treated as close, and the report says that is one run's figures, not a test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reports import trials
from reports.format import fmt_ms, fmt_rps, stage_load
from reports.pricing import DEFAULT_PRICES
from reports.schema import RunDoc, StageResult, TargetResult, deployment

DEFAULT_SLO_P99_MS = 100.0
#: The share of requests that may fail (error status, timeout, no answer) while a
#: deployment still meets the objective, unless --slo errors=... says otherwise. Failed
#: requests are not in the latency percentiles (they have no answer to time): they count
#: here, beside them.
DEFAULT_ERROR_BUDGET = 0.001
DEFAULT_MONTHLY_REQUESTS = 10_000_000
LATENCY_KEYS = ("p50", "p90", "p95", "p99")
#: Deployments billed per request; every other one is an always-on server.
PAY_PER_REQUEST = frozenset({"lambda", "null-lambda"})
#: Primary architecture for headline costs (both are in the tables).
ARCH = "x86_64"


@dataclass(frozen=True)
class Objective:
    #: Latency bounds in ms, e.g. {"p99": 100.0}.
    latency_ms: dict[str, float]
    #: Peak throughput the deployment must serve (req/s), if given.
    rps: float | None
    monthly_requests: float
    #: Which parts were not given and took their defaults.
    defaulted: tuple[str, ...]
    #: Hours in a month, as the prices count them.
    hours_per_month: float = 730.0
    #: The share of requests that may fail (see DEFAULT_ERROR_BUDGET).
    error_budget: float = DEFAULT_ERROR_BUDGET

    def describe(self) -> str:
        bounds = ", ".join(f"{k} <= {v:g} ms" for k, v in self.latency_ms.items())
        return bounds + (f" at {fmt_rps(self.rps)} req/s" if self.rps else "")

    @property
    def average_rps(self) -> float:
        return self.monthly_requests / (self.hours_per_month * 3600.0)


def latency_bounds(slo: dict[str, float] | None, slo_p99_ms: float | None
                   ) -> tuple[dict[str, float], bool]:
    """The objective's latency bounds: --slo's, else the scenario's ``slo_p99_ms``, else
    p99 <= DEFAULT_SLO_P99_MS; and whether they are that default."""
    latency = {k: float(v) for k, v in (slo or {}).items() if k in LATENCY_KEYS}
    if latency:
        return latency, False
    return {"p99": float(slo_p99_ms or DEFAULT_SLO_P99_MS)}, not slo_p99_ms


def sweep_p99_ms(slo: dict[str, float] | None, slo_p99_ms: float | None) -> float | None:
    """The p99 a run's sweep stops past and its ``rate_fractions`` take the capacity
    within: the one given (--slo, the scenario's), else the p99 bound the decision
    applies (:func:`latency_bounds`), so the capacity measured is one it would accept.
    None when the objective bounds other percentiles only."""
    if slo_p99_ms is not None:
        return slo_p99_ms
    return latency_bounds(slo, None)[0].get("p99")


def objective(run: RunDoc) -> Objective:
    meta = run["metadata"]
    slo = dict(meta.get("slo") or {})
    latency, default = latency_bounds(slo, meta.get("slo_p99_ms"))
    defaulted = ["latency"] if default else []
    volume = meta.get("monthly_requests")
    if volume is None:
        volume = DEFAULT_MONTHLY_REQUESTS
        defaulted.append("volume")
    hours = float(effective_prices(run).get("hours_per_month", 730.0))
    budget = slo.get("errors")
    if budget is None:
        budget = DEFAULT_ERROR_BUDGET
        defaulted.append("errors")
    return Objective(latency, slo.get("rps"), float(volume), tuple(defaulted), hours,
                     float(budget))


# -- per-target figures ------------------------------------------------------------------

@dataclass
class Figures:
    name: str
    ok: bool
    error: str | None
    pay_per_request: bool
    #: Measured at an --endpoint: running elsewhere, its size (so its cost) unknown here.
    external: bool = False
    valid: int = 0
    stages: int = 0
    #: The stage that set the capacity, and the capacity's estimate (req/s).
    capacity_stage: StageResult | None = None
    capacity: trials.Estimate | None = None
    #: Why the latency objective was not met (None when it was).
    miss: str | None = None
    common_stage: StageResult | None = None
    common_p99: trials.Estimate | None = None
    common_p99_values: list[float] = field(default_factory=list)
    #: Stages that met the latency objective in their kept windows only: with the
    #: windows left out as still settling (a stall, a pause), they did not.
    steady_only: list[StageResult] = field(default_factory=list)
    #: Per-trial p99s at the common load, when there are enough trials to test them.
    common_p99_trials: list[float] = field(default_factory=list)
    min_p50_ms: float | None = None
    min_p50_stage: StageResult | None = None
    peak_rps: float | None = None
    cold_start_ms: float | None = None
    cold_start_what: str | None = None
    #: False when the figure is a stand-in (no cold-start measurement in the scenario).
    cold_start_measured: bool = False
    #: Lambda: one cold start's billed Init in warm requests' cost (130: a cold start
    #: costs as much as 130 warm requests).
    cold_start_cost_ratio: float | None = None
    #: One instance (or one Lambda environment), MB; and the most the deployment held.
    memory_mb: float | None = None
    memory_total_mb: float | None = None
    cpu_ms_per_request: float | None = None
    error_rate: float | None = None
    instances: int | None = None
    instance: str | None = None
    #: Monthly cost at the volume, per architecture, and its range on ARCH.
    monthly_usd: dict[str, float] = field(default_factory=dict)
    monthly_range: tuple[float, float] | None = None
    per_million_usd: dict[str, float] = field(default_factory=dict)
    #: For the cost chart: how cost grows with volume (see monthly_cost_at).
    cost_model: dict[str, Any] = field(default_factory=dict)

    @property
    def meets(self) -> bool:
        return self.ok and self.miss is None


def _latency_ok(stage: StageResult, bounds: dict[str, float]) -> bool:
    return _within(stage["latency_ms"], bounds)


def _within(lat: Mapping[str, Any] | None, bounds: dict[str, float]) -> bool:
    """Whether a latency summary meets every bound."""
    return lat is not None and all(lat.get(k) is not None and lat[k] <= v
                                   for k, v in bounds.items())


def _errors_ok(stage: StageResult, obj: Objective) -> bool:
    return float(stage["error_rate"]) <= obj.error_budget


def goodput(stage: StageResult, bounds: dict[str, float]) -> float | None:
    """Successful requests within the latency objective, per second (inference-perf's
    goodput): the stage's req/s times the share of its successful requests at or under
    the tightest per-request bound, read from its latency distribution (interpolated
    between its stored points). None without a distribution."""
    cdf = stage.get("latency_cdf")
    if not cdf or not bounds:
        return None
    limit = min(bounds.values())
    share = float(np.interp(limit, cdf["ms"], cdf["p"], left=0.0, right=1.0))
    return float(stage["rps"]) * share


def _kept_windows(stage: StageResult) -> list[dict[str, Any]]:
    kept = stage.get("windows_kept") or 0
    return list(stage.get("windows") or [])[-kept:] if kept else []


def _values(stages: list[StageResult], key: str) -> list[float]:
    """Independent-ish repeats of a figure: per trial when there are several trials,
    else per kept measurement window (``rps``, ``p50_ms``, ``p99_ms``); [] when fewer
    than two exist."""
    if len(stages) >= 2:
        values = [trials.stage_metric(s, key) for s in stages]
        return [v for v in values if v is not None] if None not in values else []
    window_key = {"rps": "rps", "p50": "p50_ms", "p99": "p99_ms"}[key]
    values = [w.get(window_key) for w in _kept_windows(stages[0])] if stages else []
    present = [float(v) for v in values if v is not None]
    return present if len(present) >= 2 and len(present) == len(values) else []


def _spread(stages: list[StageResult], key: str) -> trials.Estimate | None:
    """A stage's figure with its uncertainty: the median over trials, or the stage's own
    figure (over all its requests) with the spread of its kept windows."""
    if not stages:
        return None
    values = _values(stages, key)
    if len(stages) >= 2:
        return trials.estimate(values) if values else None
    point = trials.stage_metric(stages[0], key)
    if point is None:
        return None
    est = trials.estimate(values) if values else None
    return trials.Estimate(est.n if est else 1, point, point, est.half_width if est else None)


def same_level(stages: list[StageResult], stage: StageResult) -> list[StageResult]:
    key = trials.level_key(stage)
    return [s for s in stages if trials.level_key(s) == key and s.get("valid", True)] \
        or [stage]


def common_load(run: RunDoc) -> tuple[str, float] | None:
    """("open", rate) or ("closed", users) that every measured target ran."""
    measured = [t for t in run["targets"] if t["status"] == "ok"
                and any(s["latency_ms"] for s in t["stages"])]
    if not measured:
        return None
    rates: list[set[float]] = [
        {float(s["open_loop"]["rate"]) for s in t["stages"] if s.get("mode") == "open"
         and s.get("open_loop") and not s["open_loop"].get("fraction")
         and s["open_loop"].get("rate") is not None}
        for t in measured]
    shared_rates = sorted(set.intersection(*rates))
    if shared_rates:
        return ("open", float(shared_rates[0]))
    def closed_levels(t: TargetResult, sweeps: bool) -> set[int]:
        return {s["concurrency"] for s in t["stages"] if s["concurrency"] is not None
                and s.get("mode", "closed") == "closed" and (sweeps or not s.get("sweep"))}

    # Fixed levels first: a sweep's steps differ between targets.
    shared = sorted(set.intersection(*(closed_levels(t, False) for t in measured)))
    if not shared:
        shared = sorted(set.intersection(*(closed_levels(t, True) for t in measured)))
    if not shared:
        return None
    return ("closed", float(shared[(len(shared) - 1) // 2]))


def describe_common(load: tuple[str, float] | None) -> str:
    if load is None:
        return "no load common to every target"
    mode, level = load
    return f"{fmt_rps(level)} req/s offered (open loop)" if mode == "open" else \
        f"{int(level)} concurrent user{'' if int(level) == 1 else 's'}"


def least_loaded(target: TargetResult) -> StageResult | None:
    """The closed-loop stage with the fewest users (the VALID one among trials)."""
    stages = [s for s in target["stages"] if s["latency_ms"] is not None
              and s.get("mode", "closed") == "closed" and s["concurrency"] is not None]
    if not stages:
        return None
    fewest = min(s["concurrency"] or 0 for s in stages)
    level = [s for s in stages if s["concurrency"] == fewest]
    return next((s for s in level if s.get("valid", True)), level[0])


def _level(stage: StageResult) -> tuple[str, float | None]:
    if stage.get("mode") == "open":
        return "open", (stage.get("open_loop") or {}).get("rate")
    return "closed", stage["concurrency"]


def at_load(target: TargetResult, load: tuple[str, float] | None) -> list[StageResult]:
    if load is None:
        return []
    mode, level = load
    out = []
    for s in target["stages"]:
        if s["latency_ms"] is None:
            continue
        if _level(s) == (mode, level):
            out.append(s)
    valid = [s for s in out if s.get("valid", True)]
    return valid or out


def pay_per_request(target: TargetResult) -> bool:
    """Billed per request: the Lambda emulator, or an endpoint that is a Lambda function."""
    return deployment(target) in PAY_PER_REQUEST \
        or target["describe"].get("billing") == "per_request"


def _cold_start(target: TargetResult) -> tuple[float | None, str | None, bool]:
    """(ms, what was timed, whether it was a cold-start measurement)."""
    cold = target.get("cold_starts") or {}
    total = (cold.get("total_ms") or {}).get("p50") if cold.get("supported") else None
    if total is not None:
        n = len(cold.get("samples", []))
        return (total, f"median of {n}: {cold.get('definition') or 'launch to first answer'}",
                True)
    # Stand-ins when the scenario measured no cold starts, each said for what it is.
    if pay_per_request(target):
        # The platform starts empty: its first requests were the cold starts.
        colds = [cold_ms["p50"] for s in target["stages"]
                 if (cold_ms := s.get("latency_cold_ms")) is not None]
        if colds:
            return colds[0], "median latency of requests that met a new environment", False
        return None, None, False
    startup = target["describe"].get("startup_s")
    if startup is not None:
        return startup * 1000.0, "one launch to a passing health check", False
    load_s = target["loadgen"].get("load_s")
    if load_s is not None:
        return load_s * 1000.0, "model load and first prediction in the running process", False
    return None, None, False


def _memory(target: TargetResult) -> tuple[float | None, float | None]:
    """(one instance or environment, the most the deployment held), MB."""
    stages = target["stages"]
    peaks = [p for s in stages if (p := s.get("target_peak_rss_mb")) is not None]
    total = max(peaks) if peaks else None
    per_env = [float(m) for s in stages
               if (m := (s.get("platform") or {}).get("max_memory_used_mb"))]
    if per_env:
        return float(max(per_env)), total
    before = target["loadgen"].get("rss_before_model_mb")
    if total is not None and target["loadgen"].get("target_in_loadgen") and before:
        # In-process: the load generator's own memory is not the model's.
        return total - before, total
    return total, total


def _error_rate(target: TargetResult) -> float | None:
    requests = sum(s["requests"] for s in target["stages"])
    return sum(s["errors"] for s in target["stages"]) / requests if requests else None


def figures(run: RunDoc, obj: Objective | None = None) -> list[Figures]:
    obj = obj or objective(run)
    load = common_load(run)
    prices = effective_prices(run)
    cpus = len(run["metadata"].get("target_cpus") or []) or 1
    out = []
    for t in run["targets"]:
        f = Figures(t["name"], t["status"] == "ok", t["error"], pay_per_request(t),
                    bool(t["describe"].get("external")))
        f.stages = len(t["stages"])
        f.valid = sum(1 for s in t["stages"] if s.get("valid", True))
        f.error_rate = _error_rate(t)
        f.cold_start_ms, f.cold_start_what, f.cold_start_measured = _cold_start(t)
        f.memory_mb, f.memory_total_mb = _memory(t)
        # A timeline (spike, soak) is a transient by design, not a capacity measurement.
        measured = [s for s in t["stages"] if s["latency_ms"] is not None
                    and s.get("mode") != "timeline"]
        if measured:
            valid = [s for s in measured if s.get("valid", True)] or measured
            # The least loaded stage, VALID or not (marked), is the minimum latency: an
            # unstable throughput there says little about its median.
            low = least_loaded(t)
            if low is not None and low["latency_ms"] is not None:
                f.min_p50_ms, f.min_p50_stage = low["latency_ms"]["p50"], low
            f.peak_rps = max(s["rps"] for s in valid)
        within = [s for s in measured if s.get("valid", True)
                  and _latency_ok(s, obj.latency_ms) and _errors_ok(s, obj)]
        # Met in the kept windows, not with the ones left out as still settling (a stall,
        # a pause): said beside the verdict.
        f.steady_only = [s for s in within if "all_measured" in s and not _within(
            s["all_measured"].get("latency_ms"), obj.latency_ms)]
        if within:
            best = max(within, key=lambda s: s["rps"])
            f.capacity_stage = best
            f.capacity = _spread(same_level(within, best), "rps")
        elif f.ok:
            f.miss = _why_missed(t, measured, obj)
        common = at_load(t, load)
        if common:
            f.common_stage = common[0]
            f.common_p99 = _spread(common, "p99")
            f.common_p99_values = _values(common, "p99")
            f.common_p99_trials = trials.trial_values(common, "p99")
            cpu = [s["target_cpu_ms_per_request"] for s in common
                   if s["target_cpu_ms_per_request"] is not None]
            f.cpu_ms_per_request = float(np.median(cpu)) if cpu else None
        # A deployment elsewhere (--endpoint): its size is unknown here, so is its cost,
        # unless it is a Lambda function whose REPORT lines said what it billed.
        if f.ok and prices and (not f.external or f.pay_per_request):
            _cost(f, t, obj, prices, cpus)
        out.append(f)
    return out


def effective_prices(run: RunDoc) -> dict[str, Any]:
    """The run's prices; what it did not record (runs before schema 4 priced no always-on
    server) from this deploybench's dated defaults."""
    return {**DEFAULT_PRICES, **(run.get("prices") or {})}


def prices_filled(run: RunDoc) -> list[str]:
    """Price keys the run did not record, taken from the defaults."""
    return sorted(set(DEFAULT_PRICES) - set(run.get("prices") or {}))


#: How an upgraded file's pre-verdict stages are marked (reports.schema.upgrade).
NOT_CHECKED = "not checked"


def _why_missed(target: TargetResult, measured: list[StageResult], obj: Objective) -> str:
    if not measured:
        if any(s.get("mode") == "timeline" for s in target["stages"]):
            return ("only a timeline ran (a transient, not a capacity measurement): run a "
                    "scenario with closed-loop stages, such as quick, to decide")
        if not target["stages"] and (target.get("cold_starts") or target.get("redeploys")):
            return ("the scenario ran no load (only cold starts or redeploys, tabled "
                    "below): run a scenario with load stages, such as quick, to decide")
        return "no request succeeded"
    valid = [s for s in measured if s.get("valid", True)]
    if not valid:
        if all(s["reasons"] and s["reasons"][0].startswith(NOT_CHECKED) for s in measured):
            return "its stages predate validity verdicts, so none can be relied on"
        return "no VALID stage (see INVALID stages)"
    fast = [s for s in valid if _latency_ok(s, obj.latency_ms)]
    if fast:  # fast enough, but failing more than the objective allows
        least = min(fast, key=lambda s: float(s["error_rate"]))
        return (f"its VALID stages within {obj.describe()} failed more than the "
                f"{obj.error_budget:.2%} error budget (least: {least['error_rate']:.2%} at "
                f"{stage_load(least)}; --slo errors=... sets the budget)")
    # The first bound the stages missed (a stage must meet all of them).
    key = next((k for k in obj.latency_ms
                if not any(_latency_ok(s, {k: obj.latency_ms[k]}) for s in valid)),
               next(iter(obj.latency_ms)))
    best = min(valid, key=lambda s: trials.stage_metric(s, key) or math.inf)
    value = trials.stage_metric(best, key)
    text = f"its lowest {key} over VALID stages was {fmt_ms(value)} ms, at {stage_load(best)}"
    invalid = [s for s in measured if not s.get("valid", True)
               and _latency_ok(s, obj.latency_ms)]
    if invalid:
        text += (f" (an INVALID stage, {stage_load(invalid[0])}, met it, but cannot be "
                 "relied on)")
    return text


# -- cost --------------------------------------------------------------------------------

def _lambda_stage(target: TargetResult, cpus: int) -> StageResult | None:
    """The least loaded stage whose environments each had a CPU (as on Lambda)."""
    with_cost = [s for s in target["stages"] if s.get("mode") != "timeline"
                 and (s.get("platform") or {}).get("cost_per_million_usd")]
    fair = [s for s in with_cost if (s.get("platform") or {}).get("environments_max", 0) <= cpus]
    pool = fair or with_cost
    return min(pool, key=lambda s: s.get("concurrency") or 0) if pool else None


def _cost(f: Figures, target: TargetResult, obj: Objective, prices: dict[str, Any],
          cpus: int) -> None:
    hours = float(prices.get("hours_per_month", 730.0))
    if f.pay_per_request:
        stage = _lambda_stage(target, cpus)
        if stage is None:
            return
        platform = stage.get("platform") or {}
        invocations = platform.get("invocations") or 0
        if not invocations:
            return
        # From what was billed, at the prices in force now (report --prices changes them).
        gb_s = float(platform.get("billed_gb_s") or 0.0) / invocations
        per_million = {a: 1e6 * (float(prices.get("lambda_request", 0.0)) + gb_s * price)
                       for a, price in (prices.get("lambda_gb_second") or {}).items()}
        f.per_million_usd = per_million
        inits = [x["init_ms"] for x in (target.get("cold_starts") or {}).get("samples", [])
                 if x.get("init_ms")]
        memory_gb = float(platform.get("memory_mb") or 0) / 1024.0
        warm = per_million.get(ARCH, 0.0) / 1e6
        if inits and warm > 0 and prices.get("lambda_bill_init", True):
            init_cost = (float(np.median(inits)) / 1000.0 * memory_gb
                         * (prices.get("lambda_gb_second") or {}).get(ARCH, 0.0))
            f.cold_start_cost_ratio = init_cost / warm
        f.monthly_usd = {a: v * obj.monthly_requests / 1e6 for a, v in per_million.items()}
        # Billed duration follows latency: the windows' p50 spread bounds the cost's.
        p50 = _spread([stage], "p50")
        rel = (p50.half_width / p50.mean) if p50 and p50.half_width and p50.mean else 0.0
        point = f.monthly_usd.get(ARCH, 0.0)
        f.monthly_range = (point * (1 - rel), point * (1 + rel))
        f.cost_model = {"kind": "per_request", "per_request": {
            a: v / 1e6 for a, v in per_million.items()}}
        f.instance = (f"{(stage.get('platform') or {}).get('memory_mb')} MB function, "
                      f"durations as measured at {stage_load(stage)}")
        return
    if f.capacity is None or f.capacity.mean <= 0:
        return
    # One instance's memory (in-process: the model's share, not the load generator's).
    gb = max(float(prices.get("container_min_gb_per_vcpu", 2.0)) * cpus,
             math.ceil((f.memory_mb or 0) / 1024.0))
    hourly = {a: cpus * vcpu + gb * prices.get("container_gb_hour", {}).get(a, 0.0)
              for a, vcpu in prices.get("container_vcpu_hour", {}).items()}
    minimum = int(prices.get("container_min_instances", 1))
    need = max(obj.average_rps, obj.rps or 0.0)

    def instances(capacity: float) -> int:
        return max(minimum, math.ceil(need / capacity - 1e-9)) if capacity > 0 else minimum

    f.instances = instances(f.capacity.mean)
    f.instance = f"{cpus} vCPU, {gb:g} GB"
    f.monthly_usd = {a: f.instances * h * hours for a, h in hourly.items()}
    f.per_million_usd = {a: v / (obj.monthly_requests / 1e6) for a, v in f.monthly_usd.items()}
    hw = f.capacity.half_width or 0.0
    # More capacity, fewer instances: the cost range runs from the interval's top to its
    # bottom.
    most, least = f.capacity.mean + hw, max(f.capacity.mean - hw, 1e-9)
    per = hourly.get(ARCH, 0.0) * hours
    f.monthly_range = (instances(most) * per, instances(least) * per)
    f.cost_model = {"kind": "always_on", "monthly_per_instance": {
        a: h * hours for a, h in hourly.items()}, "capacity_rps": f.capacity.mean,
        "min_instances": minimum, "hours": hours}


def monthly_cost_at(f: Figures, volume: float, arch: str = ARCH,
                    peak_rps: float | None = None) -> float | None:
    """This deployment's monthly cost at ``volume`` requests a month."""
    model = f.cost_model
    if not model:
        return None
    if model["kind"] == "per_request":
        return float(volume * model["per_request"].get(arch, 0.0))
    rate = max(volume / (model["hours"] * 3600.0), peak_rps or 0.0)
    n = max(model["min_instances"], math.ceil(rate / model["capacity_rps"] - 1e-9))
    return float(n * model["monthly_per_instance"].get(arch, 0.0))


#: The volume range the cost chart and the break-even search cover (requests/month).
VOLUMES = (1e4, 1e11)


def crossings(always_on: Figures, per_request: Figures, arch: str = ARCH,
              peak_rps: float | None = None) -> tuple[bool, list[float]]:
    """Where in VOLUMES the cheaper of the two changes: (whether the always-on one is
    cheaper at the lowest volume, the volumes where that flips). The always-on cost rises
    in steps as instances are added, so it can flip more than once."""
    def cheaper(v: float) -> bool:
        a = monthly_cost_at(always_on, v, arch, peak_rps)
        p = monthly_cost_at(per_request, v, arch, peak_rps)
        return a is not None and p is not None and a < p

    grid = [float(v) for v in np.geomspace(*VOLUMES, 4000)]
    start = cheaper(grid[0])
    flips, state = [], start
    for left, right in itertools.pairwise(grid):
        if cheaper(right) == state:
            continue
        low, high = left, right
        for _ in range(60):  # bisect to the flip
            mid = math.sqrt(low * high)
            if cheaper(mid) == state:
                low = mid
            else:
                high = mid
        flips.append(high)
        state = not state
    return start, flips


def break_even(always_on: Figures, per_request: Figures, arch: str = ARCH,
               peak_rps: float | None = None) -> float | None:
    """The lowest monthly volume where the always-on deployment becomes the cheaper one,
    or None if it never does within VOLUMES (or is cheaper from the start)."""
    start, flips = crossings(always_on, per_request, arch, peak_rps)
    return None if start or not flips else flips[0]


# -- the recommendation ------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    objective: Objective
    load: tuple[str, float] | None
    figures: list[Figures]
    best: Figures | None
    #: Deployments that cannot be told apart from the best.
    ties: tuple[Figures, ...]
    #: When the best is in-process: the best deployment that runs as its own service.
    best_service: Figures | None
    service_ties: tuple[Figures, ...]
    #: The deployments whose cost could not be told apart from the cheapest's (the best
    #: was chosen among them by latency), overall and as a service.
    tier: tuple[Figures, ...] = ()
    service_tier: tuple[Figures, ...] = ()


def _cost_tie(a: Figures, b: Figures) -> bool:
    if a.monthly_range is None or b.monthly_range is None:
        return a.monthly_range is None and b.monthly_range is None
    return a.monthly_range[0] <= b.monthly_range[1] and b.monthly_range[0] <= a.monthly_range[1]


def latency_differs(a: Figures, b: Figures) -> float | None:
    """Welch's p for the two p99s at the common load over trials (None: not tested, with
    fewer than trials.MIN_TRIALS_TO_TEST trials a side)."""
    return trials.welch_p(a.common_p99_trials, b.common_p99_trials)


#: Without trials to test, p99s closer than this are treated as close (not as a tested
#: tie: the report says it is one run's figures).
UNTESTED_TIE = 0.10


def latency_tie(a: Figures, b: Figures) -> bool:
    p = latency_differs(a, b)
    if p is not None:
        return p >= trials.ALPHA
    if a.common_p99 is None or b.common_p99 is None:
        return True
    low, high = sorted((a.common_p99.median, b.common_p99.median))
    return low <= 0 or high / low - 1.0 <= UNTESTED_TIE


Choice = tuple[Figures | None, tuple[Figures, ...], tuple[Figures, ...]]


def _choose(candidates: list[Figures]) -> Choice:
    """(the best, those tied with it, the cheapest tier it was chosen from)."""
    if not candidates:
        return None, (), ()
    by_cost = sorted(candidates, key=lambda f: f.monthly_usd.get(ARCH, math.inf))
    cheapest = by_cost[0]
    tier = tuple(f for f in by_cost if _cost_tie(cheapest, f))
    best = min(tier, key=lambda f: f.common_p99.mean if f.common_p99 else math.inf)
    return best, tuple(f for f in tier if f is not best and latency_tie(best, f)), tier


def decide(run: RunDoc, obj: Objective | None = None) -> Decision:
    obj = obj or objective(run)
    figs = figures(run, obj)
    candidates = [f for f in figs if f.meets]
    best, ties, tier = _choose(candidates)
    service: Choice = (None, (), ())
    if best is not None and best.name == "inprocess":
        service = _choose([f for f in candidates if f.name != "inprocess"])
    return Decision(obj, common_load(run), figs, best, ties, service[0], service[1], tier,
                    service[2])
