"""What a deployment costs a month: pay per request (Lambda, from what it billed) or
always on (instances of the target CPUs and the memory measured, at the dated prices of
:mod:`reports.pricing`), how that grows with volume, and where the cheaper one changes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from reports.figures import Figures
from reports.format import stage_load
from reports.loads import spread
from reports.objective import Objective
from reports.runblocks import Prices
from reports.schema import StageResult, TargetResult, deployment

#: Deployments billed per request; every other one is an always-on server.
PAY_PER_REQUEST = frozenset({"lambda", "null-lambda"})
#: Primary architecture for headline costs (both are in the tables).
ARCH = "x86_64"


def pay_per_request(target: TargetResult) -> bool:
    """Billed per request: the Lambda emulator, or an endpoint that is a Lambda function."""
    return deployment(target) in PAY_PER_REQUEST \
        or target["describe"].get("billing") == "per_request"


def lambda_stage(target: TargetResult, cpus: int) -> StageResult | None:
    """The least loaded stage whose environments each had a CPU (as on Lambda)."""
    with_cost = [s for s in target["stages"] if s.get("mode") != "timeline"
                 and (p := s.get("platform")) and p["cost_per_million_usd"]]
    fair = [s for s in with_cost if (p := s.get("platform")) and p["environments_max"] <= cpus]
    pool = fair or with_cost
    return min(pool, key=lambda s: s.get("concurrency") or 0) if pool else None


def billed_per_million(platform: Mapping[str, Any], prices: Prices) -> dict[str, float]:
    """What a million invocations like the stage's cost, by architecture: from what they
    billed (GB-s and requests), at ``prices`` (the run's, or ``report --prices``'s), so
    every section that prices a Lambda result agrees. {} without invocations."""
    invocations = platform.get("invocations") or 0
    if not invocations:
        return {}
    gb_s = float(platform.get("billed_gb_s") or 0.0) / invocations
    return {a: 1e6 * (float(prices.get("lambda_request", 0.0)) + gb_s * price)
            for a, price in (prices.get("lambda_gb_second") or {}).items()}


def init_ms(target: TargetResult) -> float | None:
    """The median measured Init: the cold-start samples', else the stages' new
    environments'."""
    cold = target.get("cold_starts")
    inits = sorted(x["init_ms"] for x in (cold.get("samples", []) if cold else [])
                   if x.get("init_ms"))
    if inits:
        return float(inits[math.ceil(len(inits) / 2) - 1])
    for s in target["stages"]:
        p = s.get("platform")
        if not p:
            continue
        scale = p.get("scale_out")
        summary = p["init_ms"] or (scale["init_ms"] if scale else None)
        if summary:
            return float(summary["p50"])
    return None


def price(f: Figures, target: TargetResult, obj: Objective, prices: Prices,
          cpus: int) -> None:
    hours = float(prices.get("hours_per_month", 730.0))
    if f.pay_per_request:
        stage = lambda_stage(target, cpus)
        if stage is None:
            return
        platform = stage.get("platform")
        if not platform or not platform["invocations"]:
            return
        per_million = billed_per_million(platform, prices)
        f.per_million_usd = per_million
        cold = target.get("cold_starts")
        inits = [x["init_ms"] for x in (cold.get("samples", []) if cold else [])
                 if x.get("init_ms")]
        memory_gb = float(platform.get("memory_mb") or 0) / 1024.0
        warm = per_million.get(ARCH, 0.0) / 1e6
        if inits and warm > 0 and prices.get("lambda_bill_init", True):
            init_cost = (float(np.median(inits)) / 1000.0 * memory_gb
                         * (prices.get("lambda_gb_second") or {}).get(ARCH, 0.0))
            f.cold_start_cost_ratio = init_cost / warm
        f.monthly_usd = {a: v * obj.monthly_requests / 1e6 for a, v in per_million.items()}
        # Billed duration follows latency: the windows' p50 spread bounds the cost's.
        p50 = spread([stage], "p50")
        rel = (p50.half_width / p50.mean) if p50 and p50.half_width and p50.mean else 0.0
        point = f.monthly_usd.get(ARCH, 0.0)
        f.monthly_range = (point * (1 - rel), point * (1 + rel))
        f.cost_model = {"kind": "per_request", "per_request": {
            a: v / 1e6 for a, v in per_million.items()}}
        f.instance = (f"{platform['memory_mb']} MB function, "
                      f"durations as measured at {stage_load(stage)}")
        f.way, f.prices_as_of, f.prices_source = "on demand", prices.get("as_of"), \
            prices.get("source")
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
    f.way, f.prices_as_of, f.prices_source = "always on", prices.get("container_as_of"), \
        prices.get("container_source")


def monthly_cost_at(f: Figures, volume: float, arch: str = ARCH,
                    peak_rps: float | None = None) -> float | None:
    """This deployment's monthly cost at ``volume`` requests a month (instances and warm
    environments sized for the volume's average rate, or ``peak_rps`` if higher)."""
    model = f.cost_model
    if not model:
        return None
    if model["kind"] == "per_request":
        return float(volume * model["per_request"].get(arch, 0.0))
    rate = max(volume / (model["hours"] * 3600.0), peak_rps or 0.0)
    if model["kind"] == "provisioned":
        seconds = model["hours"] * 3600.0
        n = warm_environments(rate, model["duration_s"])
        per_invocation = (model["duration_s"] * model["memory_gb"]
                          * model["duration_gb_s"].get(arch, 0.0) + model["per_request"])
        # Requests that find all n busy run on demand, billed at its price: their share
        # is Erlang's loss formula at the volume's average rate.
        spill = erlang_b(n, volume / seconds * model["duration_s"])
        on_demand = model.get("spill_per_request", {}).get(arch, per_invocation)
        return float(n * model["memory_gb"] * seconds * model["configured_gb_s"].get(arch, 0.0)
                     + volume * ((1 - spill) * per_invocation + spill * on_demand))
    if model["kind"] == "managed_instances":
        capacity = model["capacity_rps"].get(arch, 0.0)
        n = max(model["min_instances"], math.ceil(rate / capacity - 1e-9)) \
            if capacity > 0 else model["min_instances"]
        return float(n * model["monthly_per_instance"].get(arch, 0.0)
                     + volume * model["per_request"])
    n = max(model["min_instances"], math.ceil(rate / model["capacity_rps"] - 1e-9))
    return float(n * model["monthly_per_instance"].get(arch, 0.0))


def erlang_b(servers: int, load: float) -> float:
    """The share of requests that find all ``servers`` busy when requests arrive at random
    (Poisson) with ``load`` = rate x duration in flight on average (Erlang's loss formula,
    any duration distribution): 1 environment at a load of 0.6 turns away 37.5%."""
    blocked = 1.0
    for k in range(1, servers + 1):
        blocked = load * blocked / (k + load * blocked)
    return blocked if servers > 0 else 1.0


def warm_environments(rate: float, duration_s: float) -> int:
    """Environments busy on average at ``rate`` requests a second each taking
    ``duration_s`` (Little's law: concurrency = rate x time in the system), rounded up,
    at least one."""
    return max(1, math.ceil(rate * duration_s - 1e-9))


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
