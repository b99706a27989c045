"""The index's summary in words, per bundle, taken from the cells' figures: which
deployment was chosen and which leads in capacity, whether the model or the serving
overhead dominates, and whether a matrix option changes capacity more than the choice of
deployment does. Nothing here is a fixed claim: each sentence names the numbers it is from.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from reports import breakdown
from reports.decision import UNTESTED_TIE
from reports.figures import Figures
from reports.format import fmt_ms, fmt_rps, stage_load
from reports.suitecells import SuiteCell, fmt_value

#: A model share of the fastest served deployment's median at or above this: the model
#: dominates (more than half of a request's time is the model's).
MODEL_DOMINATES = 0.5
#: Two effects whose ratios are within this of each other are said to matter about as much
#: (one run's figures differ by this much from run to run: reports.decision.UNTESTED_TIE).
AS_MUCH = UNTESTED_TIE
INPROCESS = "inprocess"
#: How many cells' shares are spelled out before only the lowest and highest are.
SAID_CELLS = 3
#: The matrix key that is the choice of deployment itself, not an option of it.
TARGETS_KEY = "targets"


NONE_MET = "none met the objective"
#: A cell whose two highest capacities are within AS_MUCH of each other has no leader: a
#: difference that small is within one run's run-to-run spread.
TIED = f"a tie (the two highest within {AS_MUCH:.0%})"


def _count(counter: Counter[str], total: int) -> str:
    return ", ".join(f"{name if name in (NONE_MET, TIED) else f'`{name}`'} in {n}"
                     for name, n in counter.most_common()) + f" of {total}"


def chosen_item(cells: list[SuiteCell]) -> str | None:
    decided = [c for c in cells if c.decision is not None]
    if not decided:
        return None
    best: Counter[str] = Counter()
    service: Counter[str] = Counter()
    tied = 0
    for c in decided:
        d = c.decision
        assert d is not None
        best[d.best.name if d.best else NONE_MET] += 1
        tied += bool(d.ties)
        if d.best_service is not None:
            service[d.best_service.name] += 1
    text = f"Chosen: {_count(best, len(decided))} cells with a decision"
    if tied:
        text += f" ({tied} of them with a tie)"
    if service:
        text += f"; best as a service: {_count(service, sum(service.values()))}"
    return text + "."


def _meeting(c: SuiteCell) -> list[Figures]:
    d = c.decision
    return [f for f in d.figures if f.capacity is not None] if d else []


def leader(c: SuiteCell) -> str | None:
    """The deployment with the highest capacity within the objective in one cell, TIED
    when the next is within AS_MUCH of it; None when none met the objective, or when the
    cell measured one deployment only (`targets` as a matrix key): it led no other."""
    if c.decision is None or len(c.decision.figures) < 2:
        return None
    ranked = sorted(_meeting(c), key=lambda f: f.capacity.median if f.capacity else 0.0,
                    reverse=True)
    if not ranked:
        return None
    first, rest = ranked[0], ranked[1:]
    if rest and first.capacity and rest[0].capacity and \
            first.capacity.median <= rest[0].capacity.median * (1 + AS_MUCH):
        return TIED
    return first.name


def capacity_item(cells: list[SuiteCell]) -> str | None:
    leaders: Counter[str] = Counter()
    top: tuple[float, str, str] | None = None
    n = 0
    for c in cells:
        meeting = _meeting(c)
        name = leader(c)
        if name is None:
            continue
        n += 1
        lead = max(meeting, key=lambda f: f.capacity.median if f.capacity else 0.0)
        assert lead.capacity is not None
        leaders[name] += 1
        if top is None or lead.capacity.median > top[0]:
            top = (lead.capacity.median, lead.name, c.id)
    if top is None:
        if not any(c.decision is not None for c in cells):
            return None
        if any(_meeting(c) for c in cells):
            return ("Leads in capacity: no cell measured two or more deployments side by "
                    "side: compare their capacities across cells in the tables below.")
        return "No deployment met the objective in any cell: no capacity to lead in."
    return (f"Leads in capacity within the objective: {_count(leaders, n)} cells where one "
            f"met it (highest: `{top[1]}`, {fmt_rps(top[0])} req/s in `{top[2]}`).")


@dataclass(frozen=True)
class Share:
    cell: str
    model_ms: float
    model_at: str
    served: str
    served_ms: float
    served_at: str

    @property
    def share(self) -> float:
        return self.model_ms / self.served_ms if self.served_ms > 0 else math.inf

    def text(self) -> str:
        said = (f"in `{self.cell}` the model (in-process median {fmt_ms(self.model_ms)} ms at "
                f"{self.model_at}) is {self.share:.0%} of `{self.served}`'s median "
                f"({fmt_ms(self.served_ms)} ms at {self.served_at})")
        if self.share >= 1.0:  # the in-process call includes the load generator's own time
            said += ": the serving overhead is lost in the model's time and the noise"
        return said


def model_share(c: SuiteCell) -> Share | None:
    """The model's share of the fastest served deployment's median, both at their least
    loaded stage (reports.breakdown); None without an in-process or a served result."""
    if c.run is None:
        return None
    rows = breakdown.breakdown(c.run)
    ref = next((r for r in rows if r.name == "inprocess"), None)
    served = [r for r in rows if r is not ref and "model" in r.parts]
    if ref is None or not served:
        return None
    fastest = min(served, key=lambda r: r.total_low_ms)
    return Share(c.id, ref.total_low_ms, stage_load(ref.low_stage), fastest.name,
                 fastest.total_low_ms, stage_load(fastest.low_stage))


def dominance_item(cells: list[SuiteCell]) -> str:
    shares = [(c, model_share(c)) for c in cells if c.run is not None]
    known = [s for _, s in shares if s is not None]
    unknown = [c.id for c, s in shares if s is None]
    parts = []
    model = [s for s in known if s.share >= MODEL_DOMINATES]
    overhead = [s for s in known if s.share < MODEL_DOMINATES]
    for group, what in ((model, "the model dominates"),
                        (overhead, "the serving overhead dominates")):
        if group:
            # Past a few cells, the two ends of the range stand for the rest.
            said = sorted(group, key=lambda s: s.share)
            said = said if len(said) <= SAID_CELLS else [said[0], said[-1]]
            parts.append(f"{what} in {len(group)} of {len(known)} cells with an in-process "
                         "and a served result: "
                         + ("" if len(said) == len(group) else "from the lowest share to "
                            "the highest, ") + "; ".join(s.text() for s in said))
    if unknown:
        parts.append(f"unknown in {', '.join(f'`{i}`' for i in unknown)} (no in-process "
                     "result beside a served one to compare with)")
    if not parts:
        return "Model or serving overhead: unknown (no cell has a run to read)."
    return "Model or serving overhead: " + "; and ".join(parts) + "."


@dataclass(frozen=True)
class Effect:
    ratio: float
    text: str


def _caps(c: SuiteCell) -> dict[str, float]:
    return {f.name: f.capacity.median for f in _meeting(c) if f.capacity is not None}


def option_effect(cells: list[SuiteCell], key: str) -> Effect | None:
    """The largest ratio between a deployment's capacities under two values of ``key``,
    the other settings (scenario, other matrix values) the same; among the served
    deployments when one ran under two values (options such as the encoding do not reach
    in-process, whose differences between cells are then run-to-run noise)."""
    groups: dict[tuple[str, str], list[SuiteCell]] = {}
    for c in cells:
        others = repr(sorted((k, fmt_value(v)) for k, v in c.record["matrix"].items()
                             if k != key))
        groups.setdefault((c.record["scenario"], others), []).append(c)
    best: Effect | None = None
    for group in groups.values():
        per_name: dict[str, dict[str, float]] = {}
        for c in group:
            for name, cap in _caps(c).items():
                per_name.setdefault(name, {})[fmt_value(c.record["matrix"].get(key))] = cap
        varied = {n: v for n, v in per_name.items() if len(v) >= 2}
        served = {n: v for n, v in varied.items() if n != INPROCESS}
        for name, by_value in (served or varied).items():
            low = min(by_value, key=lambda v: by_value[v])
            high = max(by_value, key=lambda v: by_value[v])
            ratio = by_value[high] / by_value[low] if by_value[low] > 0 else math.inf
            if best is None or ratio > best.ratio:
                best = Effect(ratio, f"`{name}`: {fmt_rps(by_value[low])} req/s with "
                                     f"{key}={low}, {fmt_rps(by_value[high])} with {high}")
    return best


def deployment_effect(cells: list[SuiteCell], key: str) -> Effect | None:
    """The largest ratio between two deployments' capacities in one cell (a fixed value of
    ``key``); among the served deployments when two or more met the objective."""
    best: Effect | None = None
    for c in cells:
        caps = _caps(c)
        served = {n: v for n, v in caps.items() if n != INPROCESS}
        caps = served if len(served) >= 2 else caps
        if len(caps) < 2:
            continue
        low = min(caps, key=lambda n: caps[n])
        high = max(caps, key=lambda n: caps[n])
        ratio = caps[high] / caps[low] if caps[low] > 0 else math.inf
        if best is None or ratio > best.ratio:
            best = Effect(ratio, f"`{low}` {fmt_rps(caps[low])} req/s against `{high}` "
                                 f"{fmt_rps(caps[high])} with {key}="
                                 f"{fmt_value(c.record['matrix'].get(key))}")
    return best


def _pct(ratio: float) -> str:
    return "more than 10x" if ratio > 10 else f"{ratio - 1:.0%}"


def _weigh(option: Effect, deployment: Effect, key: str) -> str:
    if max(option.ratio, deployment.ratio) <= min(option.ratio, deployment.ratio) * (1 + AS_MUCH):
        return f"the {key} and the deployment matter about as much"
    if option.ratio > deployment.ratio:
        return f"the {key} matters more than the deployment"
    return f"the deployment matters more than the {key}"


def matrix_item(cells: list[SuiteCell], key: str) -> str:
    option = option_effect(cells, key)
    deployment = deployment_effect(cells, key)
    if option is None:
        return (f"`{key}`: its effect cannot be told from these cells: no deployment met the "
                f"objective under two of its values with the other settings the same.")
    text = (f"`{key}` changes a deployment's capacity by up to {_pct(option.ratio)} "
            f"({option.text}, other settings the same)")
    if option.ratio <= 1 + AS_MUCH:
        # Within one run's spread: no change can be claimed from it.
        text += f", within {AS_MUCH:.0%}: no effect can be told from it"
    if deployment is None:
        return text + ("; the choice of deployment cannot be weighed against it (fewer than "
                       "two deployments met the objective in any cell).")
    text += (f" while the choice of deployment changes it by up to {_pct(deployment.ratio)} "
             f"at a fixed {key} ({deployment.text})")
    return text + f": {_weigh(option, deployment, key)}."


def caveats(cells: list[SuiteCell]) -> list[str]:
    runs = [c for c in cells if c.run is not None]
    out = []
    one = [c for c in runs if c.one_run]
    if one:
        out.append(f"{'All' if len(one) == len(runs) else f'{len(one)} of {len(runs)}'} "
                   "cells' figures are one run's (no trials): differences are not tested, "
                   f"and p99s within {UNTESTED_TIE:.0%} are treated as close.")
    invalid = [(c, *c.invalid_stages()) for c in runs if c.invalid_stages()[0]]
    if invalid:
        out.append("INVALID stages (shown, not to be relied on): " + ", ".join(
            f"{n} of {total} in `{c.id}` (mostly: {c.invalid_reason()})"
            for c, n, total in invalid) + ".")
    partial = [c.id for c in runs if not c.complete]
    if partial:
        out.append("Not complete, figures from what was measured: "
                   + ", ".join(f"`{i}`" for i in partial) + ".")
    fake = [c.id for c in runs if c.simulated]
    if fake:
        out.append("SIMULATED (test targets, not a measurement): "
                   + ", ".join(f"`{i}`" for i in fake) + ".")
    return out


def weighed_keys(cells: list[SuiteCell]) -> list[str]:
    """The matrix keys with two or more values among the cells that ran (not targets:
    that is the choice of deployment itself)."""
    keys = sorted({k for c in cells for k in c.record["matrix"]})
    return [k for k in keys if k != TARGETS_KEY and len(
        {fmt_value(c.record["matrix"].get(k)) for c in cells if c.run is not None}) >= 2]


def headline(bundle: str, cells: list[SuiteCell]) -> str | None:
    """One sentence: what dominates, who leads, and what matters more, each from the
    bullets' figures."""
    ran = [c for c in cells if c.run is not None]
    if not ran:
        return None
    parts = []
    shares = [s for c in ran if (s := model_share(c)) is not None]
    if shares:
        model = sum(1 for s in shares if s.share >= MODEL_DOMINATES)
        low, high = min(s.share for s in shares), max(s.share for s in shares)
        span = f"{low:.0%}" if f"{low:.0%}" == f"{high:.0%}" else f"{low:.0%}-{high:.0%}"
        what = ("the model dominates" if model == len(shares) else
                "the serving overhead dominates" if model == 0 else
                "the model dominates in some cells and the serving overhead in others")
        parts.append(f"{what} (the model's median is {span} of the fastest served "
                     "deployment's)")

    # Every leader with its count: naming the first two alone would hide a third, and
    # "a and b lead" would not say that one led in most cells.
    leaders = Counter(name for c in ran if (name := leader(c)) is not None)
    if leaders:
        parts.append(f"leads in capacity: {_count(leaders, leaders.total())} cells")
    services = Counter(c.decision.best_service.name for c in ran
                       if c.decision and c.decision.best_service)
    if services:
        parts.append(f"best as a service: {_count(services, sum(services.values()))} cells")
    for key in weighed_keys(ran):
        option, deployment = option_effect(ran, key), deployment_effect(ran, key)
        if option and deployment:
            parts.append(_weigh(option, deployment, key))
    if not parts:
        return None
    # Every stage INVALID: said first, the figures below are not settled ones.
    hedge = " (from INVALID stages only)" if all(
        n == total and total for n, total in (c.invalid_stages() for c in ran)) else ""
    return f"For `{bundle}`{hedge} " + "; ".join(parts) + "."


def bundle_items(cells: list[SuiteCell]) -> list[str]:
    """The bullets of one bundle's summary."""
    items = [i for i in (chosen_item(cells), capacity_item(cells)) if i]
    ran = [c for c in cells if c.run is not None]
    if ran:
        items.append(dominance_item(cells))
    items += [matrix_item(ran, key) for key in weighed_keys(ran)]
    return items + caveats(cells)
