"""Where stages are compared, and each figure's spread: the load every target ran (the
common load), a target's stages at a load or its least loaded one, and a figure with its
uncertainty (over trials, else over the stage's kept windows).
"""

from __future__ import annotations

from typing import Literal

from reports import trials
from reports.format import fmt_rps
from reports.schema import RunDoc, StageResult, TargetResult
from reports.stageblocks import WindowResult

#: A window's field for each figure a spread is taken of.
WINDOW_FIELD: dict[str, Literal["rps", "p50_ms", "p99_ms"]] = {
    "rps": "rps", "p50": "p50_ms", "p99": "p99_ms"}


def kept_windows(stage: StageResult) -> list[WindowResult]:
    kept = stage.get("windows_kept") or 0
    return list(stage.get("windows") or [])[-kept:] if kept else []


def figure_values(stages: list[StageResult], key: str) -> list[float]:
    """Independent-ish repeats of a figure: per trial when there are several trials,
    else per kept measurement window (``rps``, ``p50_ms``, ``p99_ms``); [] when fewer
    than two exist."""
    if len(stages) >= 2:
        values = [trials.stage_metric(s, key) for s in stages]
        return [v for v in values if v is not None] if None not in values else []
    window_key = WINDOW_FIELD[key]
    values = [w.get(window_key) for w in kept_windows(stages[0])] if stages else []
    present = [float(v) for v in values if v is not None]
    return present if len(present) >= 2 and len(present) == len(values) else []


def spread(stages: list[StageResult], key: str) -> trials.Estimate | None:
    """A stage's figure with its uncertainty: the median over trials, or the stage's own
    figure (over all its requests) with the spread of its kept windows."""
    if not stages:
        return None
    values = figure_values(stages, key)
    if len(stages) >= 2:
        return trials.estimate(values) if values else None
    point = trials.stage_metric(stages[0], key)
    if point is None:
        return None
    est = trials.estimate(values) if values else None
    return trials.Estimate(est.n if est else 1, point, point, est.half_width if est else None)


def same_level(stages: list[StageResult], stage: StageResult) -> list[StageResult]:
    key = trials.level_key(stage)
    return [s for s in stages if trials.level_key(s) == key and s.get("valid", True)] \
        or [stage]


def common_load(run: RunDoc) -> tuple[str, float] | None:
    """("open", rate) or ("closed", users) that every measured target ran."""
    measured = [t for t in run["targets"] if t["status"] == "ok"
                and any(s["latency_ms"] for s in t["stages"])]
    if not measured:
        return None
    rates: list[set[float]] = [
        {float(rate) for s in t["stages"] if s.get("mode") == "open"
         and (ol := s.get("open_loop")) and not ol["fraction"]
         and (rate := ol["rate"]) is not None}
        for t in measured]
    shared_rates = sorted(set.intersection(*rates))
    if shared_rates:
        return ("open", float(shared_rates[0]))
    def closed_levels(t: TargetResult, sweeps: bool) -> set[int]:
        return {s["concurrency"] for s in t["stages"] if s["concurrency"] is not None
                and s.get("mode", "closed") == "closed" and (sweeps or not s.get("sweep"))}

    # Fixed levels first: a sweep's steps differ between targets.
    shared = sorted(set.intersection(*(closed_levels(t, False) for t in measured)))
    if not shared:
        shared = sorted(set.intersection(*(closed_levels(t, True) for t in measured)))
    if not shared:
        return None
    return ("closed", float(shared[(len(shared) - 1) // 2]))


def describe_common(load: tuple[str, float] | None) -> str:
    if load is None:
        return "no load common to every target"
    mode, level = load
    return f"{fmt_rps(level)} req/s offered (open loop)" if mode == "open" else \
        f"{int(level)} concurrent user{'' if int(level) == 1 else 's'}"


def least_loaded(target: TargetResult) -> StageResult | None:
    """The closed-loop stage with the fewest users (the VALID one among trials)."""
    stages = [s for s in target["stages"] if s["latency_ms"] is not None
              and s.get("mode", "closed") == "closed" and s["concurrency"] is not None]
    if not stages:
        return None
    fewest = min(s["concurrency"] or 0 for s in stages)
    level = [s for s in stages if s["concurrency"] == fewest]
    return next((s for s in level if s.get("valid", True)), level[0])


def level_of(stage: StageResult) -> tuple[str, float | None]:
    if stage.get("mode") == "open":
        ol = stage.get("open_loop")
        return "open", ol["rate"] if ol else None
    return "closed", stage["concurrency"]


def at_load(target: TargetResult, load: tuple[str, float] | None) -> list[StageResult]:
    if load is None:
        return []
    mode, level = load
    out = []
    for s in target["stages"]:
        if s["latency_ms"] is None:
            continue
        if level_of(s) == (mode, level):
            out.append(s)
    valid = [s for s in out if s.get("valid", True)]
    return valid or out
