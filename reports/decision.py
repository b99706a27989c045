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
* **Other ways to pay** for a Lambda result (:mod:`reports.waystopay`): with provisioned
  concurrency and on Lambda Managed Instances, priced from the same measurements; they
  are compared in cost (the cost section, the break-even lines and chart), not chosen
  among: their latency is the measured function's.
* **Ties**: two deployments tie when their cost ranges overlap (the range follows from
  the uncertainty of the capacity, or of the duration that Lambda bills) and their p99 at
  the common load does not differ significantly (Welch's t-test at 5% over trials, with
  ``--trials 3`` or more). One run is not tested: p99s within 10% of each other are
  treated as close, and the report says that is one run's figures, not a test.
* **Monitoring modes** (``run --monitoring``): results that measured one deployment with
  metrics or a prediction log on (``flask+metrics``) are not candidates beside it; the
  decision weighs each deployment in its lightest mode measured (off), and says so. What
  monitoring costs is the section of its own (:mod:`reports.monitorcost`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reports import monitormodes, trials, waystopay
from reports.costs import ARCH, pay_per_request, price
from reports.figures import Figures
from reports.format import fmt_ms, stage_load
from reports.loads import at_load, common_load, figure_values, least_loaded, same_level, spread
from reports.objective import Objective, errors_ok, latency_ok, meets_bounds, objective
from reports.pricing import effective_prices
from reports.schema import RunDoc, StageResult, TargetResult


def _cold_start(target: TargetResult) -> tuple[float | None, str | None, bool]:
    """(ms, what was timed, whether it was a cold-start measurement)."""
    cold = target.get("cold_starts")
    cold_ms = cold.get("total_ms") if cold and cold["supported"] else None
    total = cold_ms["p50"] if cold_ms else None
    if cold and total is not None:
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
               if (plat := s.get("platform")) and (m := plat["max_memory_used_mb"])]
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
        box = t["describe"].get("sandbox")
        f.unthrottled = isinstance(box, dict) and not box.get("enforced", True)
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
                  and latency_ok(s, obj.latency_ms) and errors_ok(s, obj)]
        # Met in the kept windows, not with the ones left out as still settling (a stall,
        # a pause): said beside the verdict.
        f.steady_only = [s for s in within if "all_measured" in s and not meets_bounds(
            s["all_measured"].get("latency_ms"), obj.latency_ms)]
        if within:
            best = max(within, key=lambda s: s["rps"])
            f.capacity_stage = best
            f.capacity = spread(same_level(within, best), "rps")
        elif f.ok:
            f.miss = _why_missed(t, measured, obj)
        common = at_load(t, load)
        if common:
            f.common_stage = common[0]
            f.common_p99 = spread(common, "p99")
            f.common_p99_values = figure_values(common, "p99")
            f.common_p99_trials = trials.trial_values(common, "p99")
            cpu = [s["target_cpu_ms_per_request"] for s in common
                   if s["target_cpu_ms_per_request"] is not None]
            f.cpu_ms_per_request = float(np.median(cpu)) if cpu else None
        # A deployment elsewhere (--endpoint): its size is unknown here, so is its cost,
        # unless it is a Lambda function whose REPORT lines said what it billed.
        if f.ok and prices and (not f.external or f.pay_per_request):
            price(f, t, obj, prices, cpus)
            f.alternatives = waystopay.alternatives(f, t, obj, prices, cpus)
        out.append(f)
    return out


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
    fast = [s for s in valid if latency_ok(s, obj.latency_ms)]
    if fast:  # fast enough, but failing more than the objective allows
        least = min(fast, key=lambda s: float(s["error_rate"]))
        return (f"its VALID stages within {obj.describe()} failed more than the "
                f"{obj.error_budget:.2%} error budget (least: {least['error_rate']:.2%} at "
                f"{stage_load(least)}; --slo errors=... sets the budget)")
    # The first bound the stages missed (a stage must meet all of them).
    key = next((k for k in obj.latency_ms
                if not any(latency_ok(s, {k: obj.latency_ms[k]}) for s in valid)),
               next(iter(obj.latency_ms)))
    best = min(valid, key=lambda s: trials.stage_metric(s, key) or math.inf)
    value = trials.stage_metric(best, key)
    text = f"its lowest {key} over VALID stages was {fmt_ms(value)} ms, at {stage_load(best)}"
    invalid = [s for s in measured if not s.get("valid", True)
               and latency_ok(s, obj.latency_ms)]
    if invalid:
        text += (f" (an INVALID stage, {stage_load(invalid[0])}, met it, but cannot be "
                 "relied on)")
    return text


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
    #: Results left out as another monitoring mode of a deployment weighed (name, the
    #: result weighed instead): reports.monitormodes.set_aside.
    set_aside: tuple[tuple[str, str], ...] = ()


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
    aside = monitormodes.set_aside(run)
    figs = [f for f in figures(run, obj) if f.name not in aside]
    candidates = [f for f in figs if f.meets]
    best, ties, tier = _choose(candidates)
    service: Choice = (None, (), ())
    if best is not None and best.name == "inprocess":
        service = _choose([f for f in candidates if f.name != "inprocess"])
    return Decision(obj, common_load(run), figs, best, ties, service[0], service[1], tier,
                    service[2], tuple(aside.items()))
