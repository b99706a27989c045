"""Prices used for cost estimates: dated defaults, overridable from a file.

Every way to pay carries its own source and date (``*_source``, ``*_as_of``); all are
us-east-1 on-demand prices in USD, read on the date given:

* **Lambda on demand** (``lambda_*``, ``source``/``as_of``): per request and per GB-second
  at the first tier, x86_64 and arm64, from https://aws.amazon.com/lambda/pricing/.
  Since 1 August 2025 the Init phase is billed too; duration is billed per 1 ms, rounded up.
* **Provisioned concurrency** (``provisioned_*``): per GB-second an environment is kept
  configured, used or not, and per GB-second of duration while it serves (lower than on
  demand), plus the same per-request fee; no Init is billed per invocation (the
  environments are initialised ahead). Same page.
* **Lambda Managed Instances** (``managed_*``, launched 30 November 2025): the function
  runs on EC2 instances Lambda manages in the user's account; billed as the instance's
  EC2 on-demand price, a management fee of 15% of it, and $0.20 per million requests,
  with no per-duration charge. Lambda keeps 3 instances running by default (one per
  Availability Zone). The default instance types are the compute-optimised ``large``
  sizes (2 vCPUs, 4 GiB): c7i.large on x86_64 and c7g.large (Graviton3) on arm64, at
  their EC2 on-demand Linux prices (https://aws.amazon.com/ec2/pricing/on-demand/).
* **Always on** (``container_*``: in-process, Flask, FastAPI, gRPC: a server that runs
  whether or not requests come): AWS Fargate's on-demand Linux prices per vCPU-hour and
  GB-hour, from https://aws.amazon.com/fargate/pricing/. A task of 1 vCPU needs at least
  2 GB of memory there (``container_min_gb_per_vcpu``).

Override any of them with ``--prices FILE`` (YAML or JSON with the same keys; a mapping
such as ``lambda_gb_second`` is merged key by key). A file that changes a way to pay's
prices without giving its date has that date marked "(with FILE)".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml

from reports.runblocks import Prices
from reports.schema import RunDoc


class PricesError(ValueError):
    """A prices file that cannot be used; the message says what to fix."""


#: Where the Lambda prices were read (the pricing page renders its tables client-side;
#: the figures were checked against its worked examples and published transcriptions).
LAMBDA_PRICING = "https://aws.amazon.com/lambda/pricing/ (us-east-1)"

DEFAULT_PRICES: Prices = {
    "as_of": "2026-11",
    "source": f"{LAMBDA_PRICING}, on demand, first tier",
    "currency": "USD",
    "lambda_request": 0.20 / 1_000_000,
    "lambda_gb_second": {"x86_64": 0.0000166667, "arm64": 0.0000133334},
    #: Whether Init time is billed (it is for on-demand functions since 2025-08-01).
    "lambda_bill_init": True,
    "provisioned_source": f"{LAMBDA_PRICING}, provisioned concurrency",
    "provisioned_as_of": "2026-12-02",
    #: Per GB-second of concurrency kept configured, and of duration while it serves.
    "provisioned_gb_second": {"x86_64": 0.0000041667, "arm64": 0.0000033334},
    "provisioned_duration_gb_second": {"x86_64": 0.0000097222, "arm64": 0.0000077778},
    "managed_source": f"{LAMBDA_PRICING}, Lambda Managed Instances; EC2 instance prices "
                      "from https://aws.amazon.com/ec2/pricing/on-demand/ (Linux)",
    "managed_as_of": "2026-12-02",
    "managed_instance_type": {"x86_64": "c7i.large", "arm64": "c7g.large"},
    "managed_instance_hour": {"x86_64": 0.08925, "arm64": 0.0725},
    "managed_instance_vcpus": {"x86_64": 2, "arm64": 2},
    #: The management fee, a fraction of the instance's EC2 on-demand price.
    "managed_fee": 0.15,
    "managed_request": 0.20 / 1_000_000,
    #: Instances Lambda keeps running by default, for Availability Zone resilience.
    "managed_min_instances": 3,
    "container_source": "https://aws.amazon.com/fargate/pricing/ (us-east-1, Linux, "
                        "on-demand)",
    "container_as_of": "2026-11",
    "container_vcpu_hour": {"x86_64": 0.04048, "arm64": 0.03238},
    "container_gb_hour": {"x86_64": 0.004445, "arm64": 0.00356},
    #: A container's memory is its peak RSS rounded up to a whole GB, at least this per vCPU.
    "container_min_gb_per_vcpu": 2.0,
    #: Always-on instances kept running however little traffic comes (1: no scale to zero).
    "container_min_instances": 1,
    "hours_per_month": 730.0,
}

#: Keys whose value maps an architecture to a price (a number >= 0).
PER_ARCH = ("lambda_gb_second", "container_vcpu_hour", "container_gb_hour",
            "provisioned_gb_second", "provisioned_duration_gb_second",
            "managed_instance_hour", "managed_instance_vcpus")
#: Keys whose value maps an architecture to a name.
PER_ARCH_NAMES = ("managed_instance_type",)
#: Keys that must be numbers >= 0.
NUMBERS = ("lambda_request", "container_min_gb_per_vcpu", "container_min_instances",
           "hours_per_month", "managed_fee", "managed_request", "managed_min_instances")
#: Keys that must be whole numbers.
WHOLE = ("container_min_instances", "managed_min_instances")
#: Keys that must be text.
TEXT = ("as_of", "source", "currency", "provisioned_source", "provisioned_as_of",
        "managed_source", "managed_as_of", "container_source", "container_as_of")
#: Each way to pay's date, and the keys whose prices it dates.
DATED = {"provisioned_as_of": "provisioned_", "managed_as_of": "managed_",
         "container_as_of": "container_"}


def _fail(path: Path, text: str) -> PricesError:
    return PricesError(f"{path}: {text}")


def _check(path: Path, prices: dict[str, Any]) -> None:
    """Every value the right kind: a PricesError naming the first that is not."""
    numbers = [*((key, prices[key]) for key in NUMBERS),
               *((f"{key}.{k}", v) for key in PER_ARCH for k, v in prices[key].items())]
    for key, value in numbers:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise _fail(path, f"price '{key}' must be a number >= 0 (got {value!r})")
    for key in WHOLE:
        if int(prices[key]) != prices[key]:
            raise _fail(path, f"'{key}' must be a whole number (got {prices[key]!r})")
    if prices["managed_fee"] > 1:
        raise _fail(path, f"'managed_fee' is a fraction of the EC2 price: 0.15 for 15% "
                          f"(got {prices['managed_fee']!r})")
    for arch, vcpus in prices["managed_instance_vcpus"].items():
        if vcpus < 1 or int(vcpus) != vcpus:
            raise _fail(path, f"'managed_instance_vcpus.{arch}' must be a whole number of "
                              f"vCPUs >= 1 (got {vcpus!r})")
    for key in (*TEXT, *(f"{k}.{a}" for k in PER_ARCH_NAMES for a in prices[k])):
        name, _, arch = key.partition(".")
        value = prices[name][arch] if arch else prices[name]
        if not isinstance(value, str) or not value:
            raise _fail(path, f"'{key}' must be text (got {value!r})")


def load_prices(path: Path | None) -> Prices:
    """The default prices, with what ``path`` sets replacing them key by key."""
    defaults: dict[str, Any] = dict(DEFAULT_PRICES)
    nested = (*PER_ARCH, *PER_ARCH_NAMES)
    prices = {**defaults, **{key: dict(defaults[key]) for key in nested}}
    if path is None:
        return cast("Prices", prices)
    try:
        override = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PricesError(f"cannot read prices from {path} ({exc}). Give a YAML or JSON file "
                        f"with keys like {sorted(DEFAULT_PRICES)}") from exc
    if not isinstance(override, dict):
        raise PricesError(f"{path} must hold a mapping of prices")
    unknown = sorted(set(override) - set(DEFAULT_PRICES))
    if unknown:
        raise _fail(path, f"unknown price key '{unknown[0]}'. Known: {sorted(DEFAULT_PRICES)}")
    for key, value in override.items():
        if key in nested:
            if not isinstance(value, dict):
                example = "{x86_64: c7i.large, arm64: c7g.large}" if key in PER_ARCH_NAMES \
                    else "{x86_64: 0.04, arm64: 0.03}"
                raise _fail(path, f"'{key}' must map architectures to values, e.g. {example}")
            prices[key].update(value)
        else:
            prices[key] = value
    prices["as_of"] = override.get("as_of", f"{DEFAULT_PRICES['as_of']} (with {path.name})")
    for dated, prefix in DATED.items():
        if dated not in override and any(k.startswith(prefix) for k in override):
            prices[dated] = f"{prices[dated]} (with {path.name})"
    _check(path, prices)
    return cast("Prices", prices)  # every key known and checked above


def _recorded_dates(recorded: Prices) -> dict[str, str]:
    """Dates a run's prices imply without naming them: a run that recorded a way to pay's
    prices but not their own date (before each had one) dated them all ``as_of``."""
    as_of = recorded.get("as_of")
    return {dated: as_of for dated, prefix in DATED.items()
            if as_of and dated not in recorded
            and any(k.startswith(prefix) and k != dated for k in recorded)}


def effective_prices(run: RunDoc) -> Prices:
    """The run's prices; what it did not record (runs before schema 4 priced no always-on
    server, runs before issue 21 no provisioned concurrency or Managed Instances) from
    this deploybench's dated defaults."""
    recorded = run.get("prices") or Prices()
    out: dict[str, Any] = {**DEFAULT_PRICES, **recorded, **_recorded_dates(recorded)}
    return cast("Prices", out)


def prices_filled(run: RunDoc) -> list[str]:
    """Price keys the run did not record, taken from the defaults."""
    recorded = run.get("prices") or Prices()
    return sorted(set(DEFAULT_PRICES) - set(recorded) - set(_recorded_dates(recorded)))
