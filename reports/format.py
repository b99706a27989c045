"""Number formatting shared by every exporter: one unit per column, sensible digits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NONE = "-"


def fmt_ms(value: float | None) -> str:
    """Milliseconds with 3 significant digits: 0.512, 12.3, 1,234."""
    if value is None:
        return NONE
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_usd(value: float | None) -> str:
    if value is None:
        return NONE
    return f"${value:,.2f}" if value >= 0.995 else f"${value:.3f}"


def fmt_volume(value: float) -> str:
    for size, unit in ((1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f}"


def fmt_rps(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def fmt_pct(value: float | None) -> str:
    return NONE if value is None else f"{value:.0f}%"


def fmt_num(value: float | None, digits: int) -> str:
    return NONE if value is None else f"{value:,.{digits}f}"


def fmt_cpus(cpus: Iterable[int] | None) -> str:
    """CPU numbers as stored in run.json, comma-separated."""
    if cpus is None:
        return NONE
    return ",".join(str(c) for c in sorted(cpus)) or NONE


def users(n: int) -> str:
    return f"{n} user" if n == 1 else f"{n} users"


def stage_load(stage: Mapping[str, Any]) -> str:
    """What load a stage offered: "4 users", "poisson 250/s (50% of capacity)" or
    "timeline 2→32→2 users"."""
    if stage.get("mode") == "timeline":
        segments = (stage.get("timeline") or {}).get("segments") or []
        return "timeline " + "→".join(str(s["users"]) for s in segments) + " users"
    if stage.get("mode") == "open":
        ol = stage.get("open_loop") or {}
        fraction = ol.get("fraction")
        share = f" ({fraction:.0%} of capacity)" if fraction else ""
        return f"{ol.get('arrival')} {fmt_rps(ol.get('rate'))}/s{share}"
    return users(int(stage["concurrency"]))


def fmt_verdict(stage: Mapping[str, Any]) -> str:
    if not stage.get("valid", True):
        return "INVALID"
    # A timeline changes its load on purpose: valid without the stability rule.
    return "valid (no stability rule)" if stage.get("mode") == "timeline" else "valid"
