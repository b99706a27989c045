"""Prices used for cost estimates: dated defaults, overridable from a file.

* **Pay per request** (the Lambda target): AWS Lambda's public on-demand prices for
  us-east-1 at the first tier, as published on https://aws.amazon.com/lambda/pricing/
  and read in November 2026 (the research notes in
  shared/research/lambda-runtime-and-invoke.md, section 4). Since 1 August 2025 the Init
  phase is billed too; duration is billed per 1 ms, rounded up.
* **Always on** (in-process, Flask, FastAPI, gRPC: a server that runs whether or not
  requests come): AWS Fargate's on-demand Linux prices for us-east-1, per vCPU-hour and GB-hour,
  as published on https://aws.amazon.com/fargate/pricing/ (rates of 2026: $0.04048 and
  $0.004445 on x86_64, $0.03238 and $0.00356 on arm64). A task of 1 vCPU needs at least
  2 GB of memory there (``container_min_gb_per_vcpu``).

Override any of them with ``--prices FILE`` (YAML or JSON with the same keys; a mapping
such as ``lambda_gb_second`` is merged key by key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml

from reports.runblocks import Prices
from reports.schema import RunDoc


class PricesError(ValueError):
    """A prices file that cannot be used; the message says what to fix."""


DEFAULT_PRICES: Prices = {
    "as_of": "2026-11",
    "source": "https://aws.amazon.com/lambda/pricing/ (us-east-1, first tier)",
    "currency": "USD",
    "lambda_request": 0.20 / 1_000_000,
    "lambda_gb_second": {"x86_64": 0.0000166667, "arm64": 0.0000133334},
    #: Whether Init time is billed (it is for on-demand functions since 2025-08-01).
    "lambda_bill_init": True,
    "container_source": "https://aws.amazon.com/fargate/pricing/ (us-east-1, Linux, "
                        "on-demand)",
    "container_vcpu_hour": {"x86_64": 0.04048, "arm64": 0.03238},
    "container_gb_hour": {"x86_64": 0.004445, "arm64": 0.00356},
    #: A container's memory is its peak RSS rounded up to a whole GB, at least this per vCPU.
    "container_min_gb_per_vcpu": 2.0,
    #: Always-on instances kept running however little traffic comes (1: no scale to zero).
    "container_min_instances": 1,
    "hours_per_month": 730.0,
}

#: Keys whose value maps an architecture to a price.
PER_ARCH = ("lambda_gb_second", "container_vcpu_hour", "container_gb_hour")
#: Keys that must be numbers >= 0.
NUMBERS = ("lambda_request", "container_min_gb_per_vcpu", "container_min_instances",
           "hours_per_month")


def load_prices(path: Path | None) -> Prices:
    """The default prices, with what ``path`` sets replacing them key by key."""
    defaults: dict[str, Any] = dict(DEFAULT_PRICES)
    prices = {**defaults, **{key: dict(defaults[key]) for key in PER_ARCH}}
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
        raise PricesError(f"{path}: unknown price key '{unknown[0]}'. "
                        f"Known: {sorted(DEFAULT_PRICES)}")
    for key, value in override.items():
        if key in PER_ARCH:
            if not isinstance(value, dict):
                raise PricesError(f"{path}: '{key}' must map architectures to prices, "
                                f"e.g. {{x86_64: 0.04, arm64: 0.03}}")
            prices[key].update(value)
        else:
            prices[key] = value
    prices["as_of"] = override.get("as_of", f"{DEFAULT_PRICES['as_of']} (with {path.name})")
    numbers = [*((key, prices[key]) for key in NUMBERS),
               *((f"{key}.{k}", v) for key in PER_ARCH for k, v in prices[key].items())]
    for key, value in numbers:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PricesError(f"{path}: price '{key}' must be a number >= 0 (got {value!r})")
    return cast("Prices", prices)  # every key known and checked above


def effective_prices(run: RunDoc) -> Prices:
    """The run's prices; what it did not record (runs before schema 4 priced no always-on
    server) from this deploybench's dated defaults."""
    return {**DEFAULT_PRICES, **run.get("prices", Prices())}


def prices_filled(run: RunDoc) -> list[str]:
    """Price keys the run did not record, taken from the defaults."""
    return sorted(set(DEFAULT_PRICES) - set(run.get("prices") or {}))
