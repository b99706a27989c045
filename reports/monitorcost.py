"""The report's "What monitoring costs" section: one deployment measured with monitoring
off, with metrics, and with metrics and a log of every prediction (the ``monitoring``
scenario, ``run --monitoring``; issue 22).

It appears when a deployment was measured in two or more modes (reports.monitormodes).
Per deployment (its deployment, encoding and batching), a row per mode: its throughput
(the highest VALID stage's req/s, and its capacity within the report's objective), p50
and p99 at the lightest load every mode ran (1 user: the latency cost) and req/s and p99
at the heaviest one (the throughput cost), each with its change against the lightest
mode measured (off), and the rows a logging mode logged. Then, from those figures, which
deployment pays most and least for metrics and for logging, hedged where a stage is
INVALID or a change is within the run's noise (the 95% intervals over the kept windows
overlap, or over trials Welch's t finds no difference), and a chart of the changes
(reports.monitorchart).
"""

from __future__ import annotations

from dataclasses import dataclass

from reports import trials
from reports.batching import Load, levels, load_text, point
from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table
from reports.decision import figures
from reports.figures import Figures
from reports.format import NONE, fmt_ms, fmt_rps
from reports.loads import at_load, same_level, spread
from reports.monitormodes import Group, groups, mode
from reports.schema import RunDoc, StageResult, TargetResult


@dataclass(frozen=True)
class Change:
    """A figure in one mode against the base mode's, at the same load."""

    value: float | None
    base: float | None
    #: True: within the run's noise; False: beyond it; None: no noise estimate.
    noise: bool | None
    #: Every stage behind both figures is VALID.
    valid: bool

    @property
    def ratio(self) -> float | None:
        """value / base - 1 (None without both)."""
        if self.value is None or not self.base:
            return None
        return self.value / self.base - 1.0


def within_noise(base: list[StageResult], mine: list[StageResult], key: str) -> bool | None:
    """Whether two figures differ by no more than the run's noise: over trials, Welch's
    t at 5%; else whether the 95% intervals over each stage's kept windows overlap."""
    p = trials.welch_p(trials.trial_values(base, key), trials.trial_values(mine, key))
    if p is not None:
        return p >= trials.ALPHA
    a, b = spread(base, key), spread(mine, key)
    if a is None or b is None or a.half_width is None or b.half_width is None:
        return None
    return abs(a.mean - b.mean) <= a.half_width + b.half_width


def _valid(stages: list[StageResult]) -> bool:
    return all(s.get("valid", True) for s in stages)


def change(base: list[StageResult], mine: list[StageResult], key: str,
           same: bool = False) -> Change:
    """``mine`` against ``base`` (``same``: they are one result's, the base row)."""
    return Change(point(mine, key), point(base, key),
                  None if same else within_noise(base, mine, key), _valid([*base, *mine]))


def peak(t: TargetResult) -> list[StageResult]:
    """The stages at the level of the highest VALID throughput (any, if none is VALID)."""
    stages = [s for s in t["stages"] if s["latency_ms"] is not None
              and s.get("mode") != "timeline"]
    valid = [s for s in stages if s.get("valid", True)] or stages
    if not valid:
        return []
    return same_level(valid, max(valid, key=lambda s: s["rps"]))


def shared_loads(g: Group) -> tuple[Load, Load] | None:
    """(the lightest, the heaviest) load every mode of a group ran: closed-loop users when
    they share any, else open-loop rates."""
    sets = [set(levels(t)) for t in g.results.values()]
    shared = set.intersection(*sets) if sets else set()
    closed = sorted(x for x in shared if x[0] == "closed")
    chosen = closed or sorted(x for x in shared if x[0] == "open")
    return (chosen[0], chosen[-1]) if chosen else None


@dataclass(frozen=True)
class Row:
    """One mode of a group, each figure against the group's base mode."""

    mode: str
    result: TargetResult
    peak_rps: Change
    capacity: Change
    light_p50: Change
    light_p99: Change
    heavy_rps: Change
    heavy_p99: Change
    #: Rows its prediction log held (None: it logged nothing).
    logged: int | None


def _capacity(f: Figures | None, base: Figures | None) -> Change:
    a, b = (x.capacity if x is not None else None for x in (f, base))
    noise = None
    if a is not None and b is not None and f is not base \
            and a.half_width is not None and b.half_width is not None:
        noise = abs(a.mean - b.mean) <= a.half_width + b.half_width
    valid = all(x is None or x.capacity_stage is None or x.capacity_stage.get("valid", True)
                for x in (f, base))
    return Change(a.median if a else None, b.median if b else None, noise, valid)


def rows(g: Group, figs: dict[str, Figures]) -> list[Row]:
    base = g.base
    loads = shared_loads(g)
    light, heavy = loads if loads else (None, None)
    out = []
    for m, t in g.results.items():
        log = t.get("prediction_log")
        same = t is base
        def at(load: Load | None, key: str, t: TargetResult = t, same: bool = same) -> Change:
            return change(at_load(base, load), at_load(t, load), key, same)

        out.append(Row(m, t, change(peak(base), peak(t), "rps", same),
                       _capacity(figs.get(t["name"]), figs.get(base["name"])),
                       at(light, "p50"), at(light, "p99"), at(heavy, "rps"),
                       at(heavy, "p99"), log["rows"] if log else None))
    return out


#: Marks a change within the run's noise.
NOISE = "≈"


def _marks(c: Change) -> tuple[str, str]:
    return (NOISE if c.noise else ""), ("" if c.valid else "†")


def rps_cell(c: Change, is_base: bool) -> str:
    text = fmt_rps(c.value)
    r = c.ratio
    noise, invalid = _marks(c)
    return text if is_base or r is None else f"{text} ({noise}{r:+.1%}){invalid}"


def ms_cell(c: Change, is_base: bool) -> str:
    text = fmt_ms(c.value)
    if is_base or c.value is None or c.base is None or c.ratio is None:
        return text
    delta = c.value - c.base
    sign = "+" if delta >= 0 else "-"
    noise, invalid = _marks(c)
    return f"{text} ({noise}{sign}{fmt_ms(abs(delta))} ms, {c.ratio:+.0%}){invalid}"


def table(g: Group, figs: dict[str, Figures]) -> Table:
    loads = shared_loads(g)
    light, heavy = (load_text(x) for x in loads) if loads else (NONE, NONE)
    out = []
    for r in rows(g, figs):
        first = r.result is g.base
        out.append((r.mode, r.result["name"], rps_cell(r.peak_rps, first),
                    rps_cell(r.capacity, first), ms_cell(r.light_p50, first),
                    ms_cell(r.light_p99, first), rps_cell(r.heavy_rps, first),
                    ms_cell(r.heavy_p99, first),
                    NONE if r.logged is None else f"{r.logged:,}"))
    base = g.base["name"]
    return Table(("mode", "result", "peak req/s", "capacity req/s", f"p50 ms, {light}",
                  f"p99 ms, {light}", f"req/s, {heavy}", f"p99 ms, {heavy}", "rows logged"),
                 tuple(out), frozenset(range(2, 9)), caption=(
        f"{g.label} in each monitoring mode; changes against {base} ({mode(g.base)}). "
        "Peak: the highest VALID stage's req/s; capacity: the highest VALID throughput "
        f"within the objective (the decision's); then the lightest ({light}: the latency "
        f"cost) and heaviest ({heavy}: the throughput cost) load every mode ran. "
        f"{NOISE}: within the run's noise (the 95% intervals over the kept windows overlap; over "
        "trials, Welch's t at 5% finds no difference); †: from an INVALID stage. Rows "
        "logged: what the prediction log held after the run."))


@dataclass(frozen=True)
class Cost:
    """What one kind of monitoring cost one deployment: its mode against the mode
    without it."""

    label: str
    what: str
    throughput: Change
    latency: Change
    where: tuple[Load | None, Load | None]


def _pairs(g: Group) -> dict[str, tuple[str, str]]:
    """For metrics and for logging, (the mode with it, the mode without) that this group
    measured: logging alone against off when run, else metrics+log against metrics."""
    have = g.results
    out = {}
    if "metrics" in have and "off" in have:
        out["metrics"] = ("metrics", "off")
    if "log" in have and "off" in have:
        out["logging"] = ("log", "off")
    elif "metrics+log" in have and "metrics" in have:
        out["logging"] = ("metrics+log", "metrics")
    elif "metrics+log" in have and "off" in have and "metrics" not in have:
        out["metrics and logging"] = ("metrics+log", "off")
    return out


def costs(run: RunDoc) -> dict[str, list[Cost]]:
    """What metrics, and logging, cost each deployment measured with and without it."""
    out: dict[str, list[Cost]] = {}
    for g in groups(run):
        loads = shared_loads(g)
        light, heavy = loads if loads else (None, None)
        for what, (on, off) in _pairs(g).items():
            a, b = g.results[off], g.results[on]
            out.setdefault(what, []).append(Cost(
                g.label, f"{on} against {off}",
                change(at_load(a, heavy), at_load(b, heavy), "rps"),
                change(at_load(a, light), at_load(b, light), "p50"), (light, heavy)))
    return out


def _cost_text(c: Cost) -> str:
    light, heavy = c.where
    parts = []
    r = c.throughput.ratio
    if r is not None and heavy is not None:
        parts.append(f"throughput {r:+.1%} at {load_text(heavy)}")
    if c.latency.value is not None and c.latency.base is not None and light is not None:
        delta = c.latency.value - c.latency.base
        parts.append(f"p50 {'+' if delta >= 0 else '-'}{fmt_ms(abs(delta))} ms at "
                     f"{load_text(light)}")
    hedges = []
    if c.throughput.noise or (c.latency.noise and r is None):
        hedges.append("within the run's noise")
    if not (c.throughput.valid and c.latency.valid):
        hedges.append("from an INVALID stage")
    return (f"**{c.label}** ({c.what}: " + (", ".join(parts) or "not measured at a shared "
                                               "load")
            + (f"; {', '.join(hedges)}" if hedges else "") + ")")


def _loss(c: Cost) -> float:
    """How much a deployment pays: the throughput it loses, else the p50 it gains."""
    r = c.throughput.ratio
    if r is not None:
        return -r
    lat = c.latency.ratio
    return lat if lat is not None else 0.0


def _valid_cost(c: Cost) -> bool:
    return c.throughput.valid and c.latency.valid


def ranking(run: RunDoc) -> list[str]:
    """For metrics and for logging, who pays most and least, from the figures. Only
    comparisons whose stages are all VALID are ranked: one resting on an INVALID stage is
    named after them, unranked (its figure may be the instability, not the cost)."""
    out = []
    for what, cs in costs(run).items():
        ranked = sorted((c for c in cs if _valid_cost(c)), key=_loss, reverse=True)
        unranked = [c for c in cs if not _valid_cost(c)]
        name = what[0].upper() + what[1:]
        if len(ranked) == 1:
            text = f"{name} cost {_cost_text(ranked[0])}"
        elif ranked:
            text = (f"{name} cost most on {_cost_text(ranked[0])} and least on "
                    f"{_cost_text(ranked[-1])}"
                    + (f"; in between: {', '.join(map(_cost_text, ranked[1:-1]))}"
                       if len(ranked) > 2 else ""))
        else:
            text = f"{name}: every comparison rests on an INVALID stage, so none is ranked"
        if unranked:
            text += (f"; not ranked: {', '.join(map(_cost_text, unranked))}")
        out.append(text + ".")
    return out


def hedge(run: RunDoc) -> str:
    several = trials.has_trials(run)
    text = ("Ranked by the throughput lost at the heaviest load every mode ran (the p50 "
            "added at the lightest beside it), among the comparisons whose stages are all "
            "VALID. ")
    if several:
        return text + (f"Changes are tested over trials (Welch's t at 5%); {NOISE} marks "
                       "a tie.")
    return text + (f"These are one run's figures: {NOISE} marks a change within the spread of the "
                   "stage's kept windows, and the windows understate the drift between "
                   "runs (on a shared VM, 10-15% between runs of a few seconds: see "
                   "docs/methodology.md), so a change of a few percent from one run is not "
                   "established; `--trials 3` tests it.")


def applies(run: RunDoc) -> bool:
    return bool(groups(run))


def blocks(run: RunDoc) -> list[Block]:
    gs = groups(run)
    if not gs:
        return []
    figs = {f.name: f for f in figures(run)}
    out: list[Block] = [
        Heading("What monitoring costs"),
        Paragraph("The same deployment with monitoring off, with Prometheus metrics "
                  "(counted and timed on every request, scraped during each stage) and with "
                  "a log of live predictions as well (input, output, model version and time "
                  "of the share of requests `--log-predictions` sets, written off the "
                  "request path where the deployment allows it): what a team pays in "
                  "throughput and latency to watch it in production."),
    ]
    for g in gs:
        out += [Heading(g.label, 3), table(g, figs)]
        if g.failed:
            out.append(Paragraph(f"Not measured (failed): {', '.join(g.failed)}; the "
                                 f"changes above are against {g.base['name']}."))
    out += [Bullets(tuple(ranking(run))), Paragraph(hedge(run)),
            Chart("monitoring", "What monitoring costs, per deployment and mode",
                  "Grouped bars per deployment, one per monitoring mode: the change in "
                  "throughput at the heaviest shared load, and in p99 at the lightest, "
                  "against monitoring off")]
    return out
