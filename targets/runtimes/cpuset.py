"""CPU lists as Linux writes them ("0-3,6"), parsed and printed."""

from __future__ import annotations

import argparse
from collections.abc import Iterable


def parse_cpus(text: str) -> list[int]:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``; raises ``argparse.ArgumentTypeError`` when malformed."""
    cpus: set[int] = set()
    try:
        for raw in text.split(","):
            part = raw.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                cpus.update(range(lo, hi + 1))
            else:
                cpus.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid CPU list ({text!r}); write it like '1' or '0-3,6'"
        ) from None
    if not cpus or min(cpus) < 0:
        raise argparse.ArgumentTypeError(f"invalid CPU list ({text!r}); CPUs are numbered from 0")
    return sorted(cpus)


def format_cpus(cpus: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
