"""The report's "Lambda power tuning" section: which Lambda memory size, from this run's own
measurements of the same function at several sizes (``run --lambda-memory-mb 512,1769``
or scenario ``power``: results ``lambda-512``, ``lambda-1769``).

It appears when a run has two or more emulated Lambda results of different memory sizes.
Per size, from its least loaded stage (``power``'s 1-user stage): the CPU share AWS gives
that size (and what this machine could give, when less), the warm invocation's duration
(p50, p99) and Max Memory Used from the emulator's REPORT records, the median Init of its
cold starts, its failures, and what a million invocations cost (x86_64 and arm64). Then,
as AWS Lambda Power Tuning does: the **cheapest** size, the **fastest** (lowest p50; sizes
within :data:`NOISE` of it count as as fast, and the cheapest of those wins), a
**balanced** one (Power Tuning's rule: the lowest ``w * cost / max cost + (1 - w) *
duration / max duration``, ``w`` = :data:`BALANCED_WEIGHT`), and **where a bigger size
stops paying**: the first size above which p50 improves by less than :data:`WORTH` while
the cost rises.

A size whose stage failed too often (above the scenario's error bound, or no warm
invocation) shows its errors and takes no part in the choices. Results whose sandbox
(``describe["sandbox"]``) did not enforce the CPU share, or that carry no sandbox
description (runs from before it was enforced), ran unthrottled: the section says their
durations do not reflect AWS's CPU shares.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table
from reports.costs import billed_per_million, init_ms, pay_per_request
from reports.format import NONE, fmt_ms, fmt_num, stage_load
from reports.pricing import effective_prices
from reports.runblocks import Prices
from reports.schema import RunDoc, StageResult, TargetResult
from targets.awslambda.shape import ONE_VCPU_MB, cpu_share

#: Two p50s this close are "as fast" (one run's medians move about this much).
NOISE = 0.05
#: Power Tuning's default balancedWeight: cost and duration count alike.
BALANCED_WEIGHT = 0.5
#: A bigger size "pays" while its p50 is at least this much lower than the size below's.
WORTH = 0.10
#: The architecture the choices are costed on (both are in the table).
ARCH = "x86_64"
#: The scenario's error bound when the run did not record one.
DEFAULT_MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Size:
    """One memory size's figures, as the section shows them."""

    name: str
    memory_mb: int
    cpu_share: float
    #: What this machine could give each environment, when less than cpu_share.
    cpu_effective: float | None
    #: CPU share and memory limit enforced by the kernel (False: unthrottled).
    enforced: bool
    stage: StageResult | None
    p50_ms: float | None
    p99_ms: float | None
    init_p50_ms: float | None
    max_memory_mb: float | None
    cost_x86: float | None
    cost_arm: float | None
    errors: int
    #: Why this size takes no part in the choices (failed, no REPORT records); None: it does.
    failed: str | None
    #: CPU time a warm invocation used in its environment (p50; None: not recorded).
    cpu_p50_ms: float | None = None

    @property
    def valid(self) -> bool:
        return self.stage is not None and bool(self.stage.get("valid", True))

    @property
    def label(self) -> str:
        return f"{self.memory_mb:,} MB"

    @property
    def cost(self) -> float:
        assert self.cost_x86 is not None  # only chosen among sizes with figures
        return self.cost_x86

    @property
    def p50(self) -> float:
        assert self.p50_ms is not None
        return self.p50_ms


@dataclass(frozen=True)
class Choices:
    cheapest: Size
    fastest: Size
    balanced: Size
    #: The size above which a bigger one stops paying, and the next size up (None: every
    #: step paid, or there is no step).
    stops_paying: tuple[Size, Size] | None


def _memory_mb(t: TargetResult) -> int | None:
    described = t.get("describe") or {}
    value = described.get("memory_mb")
    if value is None:
        value = next((p.get("memory_mb") for s in t["stages"] if (p := s.get("platform"))
                      and p.get("memory_mb")), None)
    return int(value) if value else None


def lambda_results(run: RunDoc) -> list[TargetResult]:
    """The emulated Lambda results with a memory size (an endpoint's is not ours)."""
    return [t for t in run["targets"] if pay_per_request(t)
            and not (t.get("describe") or {}).get("external") and _memory_mb(t)]


def applies(run: RunDoc) -> bool:
    return len({_memory_mb(t) for t in lambda_results(run)}) >= 2


def power_stage(t: TargetResult) -> StageResult | None:
    """The stage a size is judged on: the closed-loop stage with the fewest users
    (``power``'s 1 user), the VALID one among trials, else the least loaded stage with
    REPORT records."""
    stages = [s for s in t["stages"] if s.get("mode", "closed") == "closed"
              and s.get("concurrency") is not None]
    if not stages:
        stages = [s for s in t["stages"] if s.get("platform") and s.get("mode") != "timeline"]
        return min(stages, key=_rate, default=None)
    fewest = min(int(s["concurrency"] or 0) for s in stages)
    level = [s for s in stages if s["concurrency"] == fewest]
    return next((s for s in level if s.get("valid", True)), level[0])


def _rate(stage: StageResult) -> float:
    loop: Mapping[str, Any] = stage.get("open_loop") or {}
    return float(loop.get("rate") or 0.0)


def _sandbox(t: TargetResult, memory_mb: int) -> tuple[float | None, bool]:
    """The CPU share this machine gave, when less than AWS's, and whether the share was
    enforced (no sandbox description: a run from before it was, so unthrottled)."""
    box = (t.get("describe") or {}).get("sandbox")
    if not isinstance(box, Mapping):
        return None, False
    effective = box.get("cpu_share_effective")
    # Both as the emulator rounded them (4 places): 512 MB's 0.2894 is not "capped" below
    # an unrounded 0.28943.
    share = float(box.get("cpu_share") or cpu_share(memory_mb))
    capped = (float(effective) if effective is not None
              and float(effective) < share - 1e-3 else None)
    return capped, bool(box.get("enforced"))


def size_of(t: TargetResult, max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
            prices: Prices | None = None) -> Size:
    memory_mb = _memory_mb(t) or 0
    stage = power_stage(t) if t["status"] == "ok" else None
    platform: Mapping[str, Any] = (stage.get("platform") if stage else None) or {}
    warm = platform.get("duration_warm_ms") or {}
    # What it billed at the report's prices (as the cost section prices it: report
    # --prices changes both), else the cost the run recorded at its own.
    per_million = (billed_per_million(platform, prices) if prices is not None
                   and platform.get("billed_gb_s") is not None else None) \
        or platform.get("cost_per_million_usd") or {}
    errors = int(stage["errors"]) if stage else 0
    failed = None
    if t["status"] != "ok":
        failed = f"failed: {t.get('error') or 'unknown error'}"
    elif stage is None:
        failed = "no load stage"
    elif stage["error_rate"] > max_error_rate:
        kinds = ", ".join(f"{k} x{v}" for k, v in (stage.get("error_kinds") or {}).items())
        failed = (f"{errors:,} failed requests, {stage['error_rate']:.1%}"
                  + (f": {kinds}" if kinds else ""))
    elif not warm or per_million.get(ARCH) is None:
        failed = "no REPORT records for warm invocations"
    capped, enforced = _sandbox(t, memory_mb)
    return Size(t["name"], memory_mb, cpu_share(memory_mb), capped, enforced, stage,
                None if failed else warm.get("p50"), None if failed else warm.get("p99"),
                init_ms(t), platform.get("max_memory_used_mb"),
                per_million.get("x86_64"), per_million.get("arm64"), errors, failed,
                (platform.get("cpu_warm_ms") or {}).get("p50"))


def sizes(run: RunDoc) -> list[Size]:
    """Every Lambda result's size, smallest first."""
    bound = run["scenario"].get("max_error_rate", DEFAULT_MAX_ERROR_RATE)
    prices = effective_prices(run)
    return sorted((size_of(t, bound, prices) for t in lambda_results(run)),
                  key=lambda s: (s.memory_mb, s.name))


def choose(measured: list[Size]) -> Choices | None:
    """Power Tuning's three choices and where a bigger size stops paying, among the sizes
    with figures (None: none has)."""
    ok = sorted((s for s in measured if s.failed is None), key=lambda s: s.memory_mb)
    if not ok:
        return None
    cheapest = min(ok, key=lambda s: (s.cost, s.p50))
    quickest = min(s.p50 for s in ok)
    fastest = min((s for s in ok if s.p50 <= quickest * (1 + NOISE)),
                  key=lambda s: (s.cost, s.p50))
    top_cost, top_p50 = max(s.cost for s in ok), max(s.p50 for s in ok)

    def value(s: Size) -> float:
        return (BALANCED_WEIGHT * (s.cost / top_cost if top_cost else 0.0)
                + (1 - BALANCED_WEIGHT) * (s.p50 / top_p50 if top_p50 else 0.0))

    balanced = min(ok, key=lambda s: (value(s), s.cost))
    stops = next(((a, b) for a, b in itertools.pairwise(ok)
                  if b.cost > a.cost and b.p50 > a.p50 * (1 - WORTH)), None)
    return Choices(cheapest, fastest, balanced, stops)


def _name(s: Size) -> str:
    return s.name + ("" if s.enforced else " (unthrottled)")


def _cpu(s: Size) -> str:
    text = f"{s.cpu_share:.2f}"
    return text + (f" ({s.cpu_effective:.2f} here)" if s.cpu_effective is not None else "")


def table(measured: list[Size]) -> Table:
    rows = []
    for s in measured:
        failed = s.failed is not None
        rows.append((
            s.label, _name(s), _cpu(s), NONE if failed else fmt_ms(s.p50_ms),
            NONE if failed else fmt_ms(s.p99_ms), NONE if failed else fmt_ms(s.cpu_p50_ms),
            fmt_ms(s.init_p50_ms),
            fmt_num(s.max_memory_mb, 0), s.failed or str(s.errors),
            NONE if failed else fmt_num(s.cost_x86, 3),
            NONE if failed else fmt_num(s.cost_arm, 3),
            (stage_load(s.stage) + ("" if s.valid else " INVALID")) if s.stage else NONE,
        ))
    headers = ("memory", "result", "CPU share", "warm p50 ms", "warm p99 ms",
               "warm CPU p50 ms", "cold Init p50 ms", "max memory used MB", "failures",
               "$/1M x86_64", "$/1M arm64", "stage")
    return Table(headers, tuple(rows), frozenset({2, 3, 4, 5, 6, 7, 9, 10}),
                 caption="Per memory size: the CPU share AWS gives it (memory / 1,769 MB; "
                         "what this machine could give, when less, in brackets); the warm "
                         "invocation's duration and Max Memory Used from the emulator's "
                         "REPORT records in the stage shown; the CPU time a warm invocation "
                         "used in its environment (duration / CPU time is what the CPU "
                         "share stretched it by); the median Init of its cold "
                         "starts; and what a million such invocations cost")


def _pct(new: float, old: float) -> str:
    return f"{abs(new / old - 1):.0%}" if old else NONE


def _chosen(label: str, s: Size, why: str) -> str:
    return (f"**{label}: {s.label}** ({s.name}): p50 {fmt_ms(s.p50_ms)} ms, "
            f"${fmt_num(s.cost_x86, 3)} per million on {ARCH}; {why}"
            + ("" if s.valid else " (its stage is INVALID: read with care)"))


def _stops_text(c: Choices) -> str:
    if c.stops_paying is None:
        return (f"**Every size up paid**: each bigger size measured cut p50 by "
                f"{WORTH:.0%} or more, or cost no more")
    a, b = c.stops_paying
    gain = (f"cuts p50 by only {_pct(b.p50, a.p50)} (under {WORTH:.0%}; "
            if b.p50 < a.p50 else "is no faster (p50 ")
    return (f"**A bigger size stops paying above {a.label}**: {b.label} {gain}"
            f"{fmt_ms(a.p50_ms)} to {fmt_ms(b.p50_ms)} ms) while a million invocations "
            f"cost {_pct(b.cost, a.cost)} more")


def _one_vcpu_text(ok: list[Size]) -> str | None:
    """When the sizes above one vCPU (1,769 MB) are no faster than it."""
    base = next((s for s in ok if s.memory_mb >= ONE_VCPU_MB), None)
    above = [s for s in ok if base is not None and s.memory_mb > base.memory_mb]
    if base is None or not above:
        return None
    capped = [s for s in above if s.cpu_effective is not None
              and s.cpu_effective <= (base.cpu_effective or base.cpu_share) + 1e-6]
    if capped:
        return (f"{', '.join(s.label for s in capped)} could not get more CPU than "
                f"{base.label} on this machine ({capped[0].cpu_effective:.2f} CPUs, capped by "
                "the target CPUs), so whether the handler gains above one vCPU is not "
                "measured here: give the run more --target-cpus")
    if any(s.p50 < base.p50 * (1 - WORTH) for s in above):
        return (f"Sizes above {base.label} were faster than it: the handler uses more "
                "than one CPU at a time (threads), so the second vCPU (from 1,770 MB) pays")
    return (f"Sizes above {base.label} ({', '.join(s.label for s in above)}) were no "
            f"faster than it (p50 within {WORTH:.0%}), though their environments ran as "
            "many torch threads as AWS shows them vCPUs: the handler does not use a second "
            "CPU (single-threaded code gains nothing above one vCPU, 1,769 MB, and small "
            "work does not split across threads); they only cost more")


def findings(measured: list[Size]) -> list[str]:
    """The choices in plain words, each from the table's figures."""
    c = choose(measured)
    if c is None:
        return ["No size has warm invocations to compare: see the failures above."]
    ok = [s for s in measured if s.failed is None]
    items = [
        _chosen("Cheapest", c.cheapest, "the lowest cost per million"),
        _chosen("Fastest", c.fastest, f"the lowest p50 (sizes within {NOISE:.0%} of the "
                                      "lowest count as as fast; the cheaper wins)"),
        _chosen("Balanced", c.balanced,
                f"the lowest {BALANCED_WEIGHT:g} x cost / highest cost + "
                f"{1 - BALANCED_WEIGHT:g} x p50 / highest p50 (AWS Lambda Power Tuning's "
                "balanced strategy at its default weight)"),
        _stops_text(c),
    ]
    vcpu = _one_vcpu_text(ok) if all(s.enforced for s in ok) else None
    if vcpu:
        items.append(vcpu)
    failed = [s for s in measured if s.failed is not None]
    if failed:
        items.append("Not chosen, having failed: " + "; ".join(
            f"{s.label} ({s.failed})" for s in failed)
            + (". Max Memory Used near the size means it ran out of memory: give it more"
               if any(s.max_memory_mb and s.max_memory_mb >= 0.9 * s.memory_mb
                      for s in failed) else ""))
    if not all(s.valid for s in ok):
        items.append("Some sizes' stages are INVALID (marked in the table): these choices "
                     "rest on figures that did not meet the validity rules")
    return items


def _unthrottled_text(measured: list[Size]) -> str | None:
    loose = [s for s in measured if not s.enforced]
    if not loose:
        return None
    every = len(loose) == len(measured)
    return (f"**Unthrottled**: {'every size' if every else ', '.join(s.name for s in loose)} "
            "ran without its CPU share enforced (the emulator could not, or the run "
            "predates it): each environment had the full speed of the target CPUs, so "
            "these durations do not reflect AWS's CPU shares, and a smaller size looks "
            "faster and cheaper here than it would be on AWS. Costs follow the durations.")


def blocks(run: RunDoc) -> list[Block]:
    if not applies(run):
        return []
    measured = sizes(run)
    out: list[Block] = [
        Heading("Lambda power tuning"),
        Paragraph("The same function at each memory size, as AWS Lambda Power Tuning "
                  "measures it, but offline and from this run: on AWS the memory size "
                  "also buys CPU (1,769 MB is one vCPU, less a fraction of one), so a "
                  "bigger size runs a CPU-bound model faster, and is billed more per "
                  "millisecond. Duration is the warm invocation inside its environment "
                  "(REPORT's Duration), at the stage's load; cost per million is what "
                  "such invocations are billed."),
    ]
    loose = _unthrottled_text(measured)
    if loose:
        out.append(Paragraph(loose))
    out += [
        table(measured),
        Bullets(tuple(findings(measured))),
        Chart("power", "Duration and cost per million invocations vs memory size",
              "Warm duration p50 (line) and p99 (markers) and cost per million "
              "invocations against Lambda memory size"),
    ]
    return out
