"""Scenario files: named YAML documents under ``scenarios/`` (or a path to your own).

A scenario is a list of closed-loop stages (concurrency levels, no think time) with the
same timing each: a warm-up that is discarded (it lasts at least ``warmup_s`` and until
every user has had an answer, at most ``warmup_max_s``: a Lambda environment's cold start
or a connection's first request belongs there), a measurement window, a cool-down during
which the load continues so requests sent in the window finish under the same load, and a
drain that waits for the last in-flight requests before users stop.

``cold_starts: N`` first measures N cold starts of each target (from nothing to its
first good answer), before any stage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


class ScenarioError(ValueError):
    """A scenario cannot be found or does not parse; the message names the key."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    #: Closed-loop stages: the number of concurrent users in each, in order.
    concurrency: tuple[int, ...]
    warmup_s: float
    duration_s: float
    cooldown_s: float
    #: Longest wait for in-flight requests once a stage stops sending.
    drain_timeout_s: float
    #: SHA-256 of the file's bytes: results from an edited scenario are not comparable.
    sha256: str
    path: str
    #: The warm-up goes on past warmup_s until every user has had an answer, up to this.
    warmup_max_s: float = 120.0
    #: Cold starts to measure per target before the stages.
    cold_starts: int = 0

    @property
    def estimated_s(self) -> float:
        """Load time per target, excluding start-up, extended warm-ups and drains."""
        per_stage = self.warmup_s + self.duration_s + self.cooldown_s
        return per_stage * len(self.concurrency)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description,
            "concurrency": list(self.concurrency), "warmup_s": self.warmup_s,
            "duration_s": self.duration_s, "cooldown_s": self.cooldown_s,
            "drain_timeout_s": self.drain_timeout_s, "sha256": self.sha256, "path": self.path,
            "warmup_max_s": self.warmup_max_s, "cold_starts": self.cold_starts,
        }


DEFAULTS: dict[str, Any] = {"cooldown_s": 0.5, "drain_timeout_s": 30.0, "description": "",
                            "warmup_max_s": 120.0, "cold_starts": 0}
KNOWN_KEYS = {"description", "concurrency", "warmup_s", "duration_s", "cooldown_s",
              "drain_timeout_s", "warmup_max_s", "cold_starts"}


def available() -> dict[str, Path]:
    """Built-in scenarios by name."""
    return {p.stem: p for p in sorted(HERE.glob("*.yaml"))}


def _number(doc: dict[str, Any], key: str, where: str, minimum: float) -> float:
    value = doc.get(key, DEFAULTS.get(key))
    if value is None:
        raise ScenarioError(f"{where}: missing key '{key}'")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ScenarioError(f"{where}: '{key}' must be a number >= {minimum} (got {value!r})")
    return float(value)


def load(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path."""
    builtins = available()
    if name_or_path in builtins:
        path = builtins[name_or_path]
    else:
        path = Path(name_or_path)
        if not path.is_file():
            known = ", ".join(builtins)
            raise ScenarioError(
                f"unknown scenario ({name_or_path!r}). Choose one of: {known}, or give a YAML path"
            )
    raw = path.read_bytes()
    where = str(path)
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ScenarioError(f"{where}: must be a mapping of settings")
    unknown = sorted(set(doc) - KNOWN_KEYS)
    if unknown:
        raise ScenarioError(f"{where}: unknown key '{unknown[0]}'. Known: {sorted(KNOWN_KEYS)}")
    cold_starts = doc.get("cold_starts", 0)
    if isinstance(cold_starts, bool) or not isinstance(cold_starts, int) or cold_starts < 0:
        raise ScenarioError(f"{where}: 'cold_starts' must be a whole number >= 0")
    levels = doc.get("concurrency", [] if cold_starts else None)
    if (not isinstance(levels, list) or not (levels or cold_starts)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in levels)):
        raise ScenarioError(f"{where}: 'concurrency' must be a list of integers >= 1 "
                            "(it may be empty only when 'cold_starts' is set)")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: 'description' must be text")
    return Scenario(
        name=path.stem,
        description=description.strip(),
        concurrency=tuple(levels),
        warmup_s=_number(doc, "warmup_s", where, 0.0),
        duration_s=_number(doc, "duration_s", where, 0.1),
        cooldown_s=_number(doc, "cooldown_s", where, 0.0),
        drain_timeout_s=_number(doc, "drain_timeout_s", where, 0.1),
        sha256=hashlib.sha256(raw).hexdigest(),
        path=where,
        warmup_max_s=_number(doc, "warmup_max_s", where, 0.0),
        cold_starts=cold_starts,
    )
