"""The other ways to pay for a Lambda result, priced from its own measurements: with
provisioned concurrency, and on Lambda Managed Instances (on demand is priced in
:mod:`reports.costs`).

* **Provisioned concurrency** keeps N environments initialised all month: N x memory GB x
  seconds in a month x the price per GB-second configured, plus each invocation's billed
  duration at the (lower) provisioned duration price and the request fee; no Init is
  billed. N is the concurrency the traffic needs by Little's law: the objective's peak
  rate (``--slo rps=``; else the volume's average rate) x the measured warm duration,
  rounded up, at least 1. Requests that find all N busy spill over to on-demand
  environments and are billed on demand; their share is Erlang's loss formula (Poisson
  arrivals) at the volume's average rate.
* **Managed Instances** run the function on EC2 instances Lambda manages, an environment
  serving several requests at once on the instance's vCPUs: instances x (EC2 price x (1 +
  management fee)) x hours, plus the request fee; no duration charge. An instance serves
  its vCPUs x 1,000 / the CPU ms a warm invocation used in its environment here (the
  same at every memory size; runs without that figure: the warm duration x the CPUs
  the environment had); instances = max(the minimum kept, ceil(peak rate /
  that)).

Both reuse the result's figures (latency, capacity, verdict): only how it is paid changes.
"""

from __future__ import annotations

import dataclasses
import math

from reports.costs import lambda_stage, monthly_cost_at, warm_environments
from reports.figures import Figures, ManagedInstancesCost, ProvisionedCost
from reports.objective import Objective
from reports.runblocks import Prices
from reports.schema import StageResult, TargetResult
from targets.awslambda.shape import cpu_share

PROVISIONED = "provisioned concurrency"
MANAGED = "managed instances"


def warm_duration_ms(stage: StageResult) -> float | None:
    """One warm invocation's mean duration in the stage (REPORT's Duration), else its
    mean billed duration."""
    platform = stage.get("platform")
    if not platform:
        return None
    warm = platform.get("duration_warm_ms")
    if warm and warm.get("mean"):
        return float(warm["mean"])
    if platform["invocations"] and platform["billed_ms"]:
        return platform["billed_ms"] / platform["invocations"]
    return None


def environment_cpus(target: TargetResult, memory_mb: int) -> float:
    """CPUs one environment had: its enforced share (memory / 1,769, capped by the target
    CPUs; a real function's as AWS gives it); one where the share was not enforced (the
    environments ran unthrottled, each on a CPU of the target's, the stage chosen so)."""
    sandbox = target["describe"].get("sandbox")
    if target["describe"].get("external"):  # a real function: AWS gives it its share
        return cpu_share(memory_mb)
    if isinstance(sandbox, dict) and sandbox.get("enforced"):
        return float(sandbox.get("cpu_share_effective") or cpu_share(memory_mb))
    return 1.0


def per_vcpu_rps(target: TargetResult, stage: StageResult) -> float | None:
    """Requests a second one vCPU serves: 1,000 / the CPU time a warm invocation used in
    its environment, where recorded (the same at every memory size); else one
    environment's rate per CPU it had, kept busy (runs before the emulator recorded CPU
    time: overstated for a function that waits rather than computes)."""
    platform = stage.get("platform")
    summary = platform.get("cpu_warm_ms") if platform else None
    cpu = summary.get("mean") if summary else None
    if cpu:
        return 1000.0 / float(cpu)
    duration = warm_duration_ms(stage)
    if not platform or not duration or not platform.get("memory_mb"):
        return None
    return 1000.0 / (duration * environment_cpus(target, int(platform["memory_mb"] or 0)))


def cold_share(target: TargetResult) -> tuple[int, int]:
    """(cold starts, invocations) in the measured stages' windows (after their warm-ups)."""
    stages = [p for s in target["stages"] if s.get("mode") != "timeline"
              and (p := s.get("platform"))]
    return sum(p["cold"] for p in stages), sum(p["invocations"] for p in stages)


def _relative(f: Figures) -> float:
    """The on-demand cost's relative uncertainty (the billed duration's)."""
    point = f.monthly_usd.get("x86_64")
    if not f.monthly_range or not point:
        return 0.0
    return max(0.0, f.monthly_range[1] / point - 1.0)


def _finish(alt: Figures, obj: Objective) -> None:
    """Monthly cost and cost per million at the expected volume, by architecture."""
    volume = obj.monthly_requests
    for arch in alt.per_million_usd:
        cost = monthly_cost_at(alt, volume, arch, obj.rps)
        alt.monthly_usd[arch] = cost or 0.0
        alt.per_million_usd[arch] = (cost or 0.0) / (volume / 1e6) if volume else 0.0


def provisioned(f: Figures, target: TargetResult, obj: Objective, prices: Prices,
                cpus: int) -> Figures | None:
    stage = lambda_stage(target, cpus)
    platform = stage.get("platform") if stage else None
    duration = warm_duration_ms(stage) if stage else None
    if not platform or not duration or not platform.get("memory_mb"):
        return None
    memory_gb = float(platform["memory_mb"] or 0) / 1024.0
    # Lambda bills duration per 1 ms, rounded up.
    duration_s = math.ceil(duration) / 1000.0
    model: ProvisionedCost = {
        "kind": "provisioned", "memory_gb": memory_gb, "duration_s": duration_s,
        "configured_gb_s": dict(prices.get("provisioned_gb_second") or {}),
        "duration_gb_s": dict(prices.get("provisioned_duration_gb_second") or {}),
        "per_request": float(prices.get("lambda_request", 0.0)),
        "hours": float(prices.get("hours_per_month", 730.0))}
    if f.cost_model is not None and f.cost_model["kind"] == "per_request":
        model["spill_per_request"] = dict(f.cost_model["per_request"])
    n = warm_environments(max(obj.average_rps, obj.rps or 0.0), duration_s)
    alt = dataclasses.replace(
        f, name=f"{f.name} (provisioned)", way=PROVISIONED, cost_model=model,
        instances=n, alternatives=[], monthly_usd={},
        per_million_usd=dict.fromkeys(model["configured_gb_s"], 0.0),
        instance=f"{n} environment{'s' if n != 1 else ''} of {platform['memory_mb']} MB "
                 f"kept warm ({duration_s * 1000:g} ms billed per invocation)",
        prices_as_of=prices.get("provisioned_as_of"),
        prices_source=prices.get("provisioned_source"))
    _finish(alt, obj)
    rel, point = _relative(f), alt.monthly_usd.get("x86_64", 0.0)
    alt.monthly_range = (point * (1 - rel), point * (1 + rel))
    return alt


def managed_instances(f: Figures, target: TargetResult, obj: Objective, prices: Prices,
                      cpus: int) -> Figures | None:
    stage = lambda_stage(target, cpus)
    per_vcpu = per_vcpu_rps(target, stage) if stage else None
    if not per_vcpu:
        return None
    hours = float(prices.get("hours_per_month", 730.0))
    fee = float(prices.get("managed_fee", 0.0))
    hourly = prices.get("managed_instance_hour") or {}
    vcpus = prices.get("managed_instance_vcpus") or {}
    types = prices.get("managed_instance_type") or {}
    capacity = {a: per_vcpu * vcpus.get(a, 0) for a in hourly}
    minimum = int(prices.get("managed_min_instances", 3))
    model: ManagedInstancesCost = {
        "kind": "managed_instances", "capacity_rps": capacity, "min_instances": minimum,
        "monthly_per_instance": {a: h * (1 + fee) * hours for a, h in hourly.items()},
        "per_request": float(prices.get("managed_request", 0.0)), "hours": hours}
    need = max(obj.average_rps, obj.rps or 0.0)

    def instances(rps: float) -> int:
        return max(minimum, math.ceil(need / rps - 1e-9)) if rps > 0 else minimum

    n = instances(capacity.get("x86_64", 0.0))
    alt = dataclasses.replace(
        f, name=f"{f.name} (managed instances)", way=MANAGED, cost_model=model,
        instances=n, alternatives=[], monthly_usd={},
        per_million_usd=dict.fromkeys(hourly, 0.0),
        instance=f"{n} x {types.get('x86_64', '?')} ({vcpus.get('x86_64', 0):g} vCPUs, "
                 f"~{capacity.get('x86_64', 0.0):,.0f} req/s each)",
        prices_as_of=prices.get("managed_as_of"), prices_source=prices.get("managed_source"))
    _finish(alt, obj)
    # More capacity, fewer instances: the range runs from the duration's best to worst.
    rel, cap = _relative(f), capacity.get("x86_64", 0.0)
    per = model["monthly_per_instance"].get("x86_64", 0.0)
    fees = obj.monthly_requests * model["per_request"]
    alt.monthly_range = (instances(cap * (1 + rel)) * per + fees,
                         instances(max(cap * (1 - rel), 1e-9)) * per + fees)
    return alt


def alternatives(f: Figures, target: TargetResult, obj: Objective, prices: Prices,
                 cpus: int) -> list[Figures]:
    """A Lambda result priced with provisioned concurrency and on Managed Instances (the
    ones its figures allow)."""
    if not f.pay_per_request or f.cost_model is None:
        return []
    return [alt for alt in (provisioned(f, target, obj, prices, cpus),
                            managed_instances(f, target, obj, prices, cpus))
            if alt is not None]
