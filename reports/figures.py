"""One deployment's figures as the decision weighs them (:func:`reports.decision.figures`
fills them in; :mod:`reports.costs` prices them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NotRequired, TypedDict

from reports import trials
from reports.schema import StageResult


class PerRequestCost(TypedDict):
    """Billed per request: USD per request, by architecture."""

    kind: Literal["per_request"]
    per_request: dict[str, float]


class AlwaysOnCost(TypedDict):
    """Always-on instances: USD a month per instance by architecture, the requests a
    second one serves, how many always run, and hours in a month."""

    kind: Literal["always_on"]
    monthly_per_instance: dict[str, float]
    capacity_rps: float
    min_instances: int
    hours: float


class ProvisionedCost(TypedDict):
    """Lambda with provisioned concurrency: environments kept warm (as many as Little's law
    gives at the rate, at least one), each GB-second of them configured billed, and each
    invocation's duration and request; USD by architecture."""

    kind: Literal["provisioned"]
    memory_gb: float
    #: One warm invocation's billed duration, seconds.
    duration_s: float
    configured_gb_s: dict[str, float]
    duration_gb_s: dict[str, float]
    per_request: float
    hours: float
    #: What an invocation costs on demand, by architecture: the price of those that find
    #: every provisioned environment busy and spill over.
    spill_per_request: NotRequired[dict[str, float]]


class ManagedInstancesCost(TypedDict):
    """Lambda Managed Instances: USD a month per instance (EC2 price and management fee)
    and requests a second one serves, by architecture; the per-request fee, how many
    always run, and hours in a month."""

    kind: Literal["managed_instances"]
    monthly_per_instance: dict[str, float]
    capacity_rps: dict[str, float]
    per_request: float
    min_instances: int
    hours: float


CostModel = PerRequestCost | AlwaysOnCost | ProvisionedCost | ManagedInstancesCost


@dataclass
class Figures:
    name: str
    ok: bool
    error: str | None
    pay_per_request: bool
    #: Measured at an --endpoint: running elsewhere, its size (so its cost) unknown here.
    external: bool = False
    #: An emulated Lambda result whose CPU share and memory limit the emulator could not
    #: enforce (describe["sandbox"]["enforced"] false): it ran at the full speed of the
    #: target CPUs, so its figures are a bigger function's than AWS would run.
    unthrottled: bool = False
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
    cost_model: CostModel | None = None
    #: How this deployment is paid for: "on demand" (Lambda), "provisioned concurrency",
    #: "managed instances", or "always on" (a server).
    way: str = ""
    #: The prices' date and source for that way to pay.
    prices_as_of: str | None = None
    prices_source: str | None = None
    #: A Lambda result's other ways to pay (reports.waystopay): the same measurements,
    #: priced as provisioned concurrency and as Managed Instances.
    alternatives: list[Figures] = field(default_factory=list)

    @property
    def meets(self) -> bool:
        return self.ok and self.miss is None
