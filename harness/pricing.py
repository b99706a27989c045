"""Prices used for cost estimates: dated defaults, overridable from a file.

Defaults are AWS Lambda's public on-demand prices for us-east-1 at the first tier, as
published on https://aws.amazon.com/lambda/pricing/ and read in November 2026 (the
research notes in shared/research/lambda-runtime-and-invoke.md, section 4). Since
1 August 2025 the Init phase is billed too; duration is billed per 1 ms, rounded up.
Override any of them with ``--prices FILE`` (YAML or JSON with the same keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError

DEFAULT_PRICES: dict[str, Any] = {
    "as_of": "2026-11",
    "source": "https://aws.amazon.com/lambda/pricing/ (us-east-1, first tier)",
    "currency": "USD",
    "lambda_request": 0.20 / 1_000_000,
    "lambda_gb_second": {"x86_64": 0.0000166667, "arm64": 0.0000133334},
    #: Whether Init time is billed (it is for on-demand functions since 2025-08-01).
    "lambda_bill_init": True,
}


def load_prices(path: Path | None) -> dict[str, Any]:
    """The default prices, with what ``path`` sets replacing them key by key."""
    prices = {**DEFAULT_PRICES, "lambda_gb_second": dict(DEFAULT_PRICES["lambda_gb_second"])}
    if path is None:
        return prices
    try:
        override = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read prices from {path} ({exc}). Give a YAML or JSON file "
                        f"with keys like {sorted(DEFAULT_PRICES)}") from exc
    if not isinstance(override, dict):
        raise UserError(f"{path} must hold a mapping of prices")
    unknown = sorted(set(override) - set(DEFAULT_PRICES))
    if unknown:
        raise UserError(f"{path}: unknown price key '{unknown[0]}'. "
                        f"Known: {sorted(DEFAULT_PRICES)}")
    for key, value in override.items():
        if key == "lambda_gb_second":
            if not isinstance(value, dict):
                raise UserError(f"{path}: 'lambda_gb_second' must map architectures to prices")
            prices[key].update(value)
        else:
            prices[key] = value
    prices["as_of"] = override.get("as_of", f"{DEFAULT_PRICES['as_of']} (with {path.name})")
    numbers = [("lambda_request", prices["lambda_request"]),
               *((f"lambda_gb_second.{k}", v) for k, v in prices["lambda_gb_second"].items())]
    for key, value in numbers:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UserError(f"{path}: price '{key}' must be a number >= 0 (got {value!r})")
    return prices
