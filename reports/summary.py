"""The report's first page in words: the objective, the recommendation and why, a table
of every deployment, and the questions people ask before choosing one."""

from __future__ import annotations

import itertools

from reports import costsection
from reports.blocks import Block, Bullets, Paragraph, Table
from reports.costs import ARCH, VOLUMES, crossings
from reports.decision import UNTESTED_TIE, Decision, latency_differs
from reports.figures import Figures
from reports.format import fmt_ms, fmt_num, fmt_rps, fmt_usd, fmt_volume, stage_load
from reports.loads import describe_common
from reports.objective import goodput
from reports.schema import RunDoc, StageResult
from reports.trials import ALPHA, Estimate


def fmt_est(est: Estimate | None, unit: str = "") -> str:
    """"3,197 ± 41": the estimate and its 95% interval half-width (the interval is centred
    on it), or the value alone when the uncertainty is unknown."""
    if est is None:
        return "-"
    fn = fmt_ms if unit == "ms" else fmt_rps
    value = fn(est.mean)
    if est.half_width is None:
        return value
    return f"{value} ± {fn(est.half_width)}"


def _invalid(stage: StageResult | None) -> str:
    return ", an INVALID stage" if stage is not None and not stage.get("valid", True) else ""


def _capacity_text(f: Figures, d: Decision) -> str:
    stage = f.capacity_stage
    if f.capacity is None or stage is None or stage["latency_ms"] is None:
        return ""
    good = goodput(stage, d.objective.latency_ms)
    within = min(d.objective.latency_ms.values()) if d.objective.latency_ms else None
    at = (f"up to {fmt_est(f.capacity)} req/s (at {stage_load(stage)}, p99 "
          f"{fmt_ms(stage['latency_ms']['p99'])} ms, errors {stage['error_rate']:.2%}"
          + (f"; goodput {fmt_rps(good)} req/s answered within {within:g} ms"
             if good is not None and within is not None else "") + ")")
    if not f.pay_per_request:
        return at + " per instance"
    if f.external:  # a real function: what the load reached, not a ceiling
        return at + ", as far as this load went; Lambda adds environments beyond that"
    scale = " on the CPUs measured here, and Lambda adds environments beyond that"
    if d.objective.rps:
        scale += (f" (the {fmt_rps(d.objective.rps)} req/s objective is taken as met by "
                  "scaling out; the emulator cannot show it)")
    return at + scale


def _cost_text(f: Figures, d: Decision) -> str:
    cost = f.monthly_usd.get(ARCH)
    if cost is None:
        return "cost not estimated (no capacity within the objective or no prices)"
    volume = fmt_volume(d.objective.monthly_requests)
    per_million = fmt_usd(f.per_million_usd.get(ARCH))
    if f.pay_per_request:
        return (f"{fmt_usd(cost)} a month at {volume} requests, billed per request "
                f"({per_million} per million; a {f.instance})")
    n = f.instances or 1
    model = f.cost_model
    always_on = model if model is not None and model["kind"] == "always_on" else None
    monthly = always_on["monthly_per_instance"].get(ARCH) if always_on else None
    rate = (f" at ${monthly / always_on['hours']:.4f} an hour, the always-on prices under "
            "How these numbers were measured" if always_on and monthly and always_on["hours"]
            else "")
    return (f"{fmt_usd(cost)} a month at {volume} requests ({n} always-on "
            f"instance{'s' if n > 1 else ''} of {f.instance}{rate}; {per_million} per "
            "million)")


def _p99_text(f: Figures, d: Decision) -> str:
    if f.common_p99 is None:
        return "no p99 at the common load"
    text = (f"p99 {fmt_est(f.common_p99, unit='ms')} ms at {describe_common(d.load)}"
            f"{_invalid(f.common_stage)}")
    bound = d.objective.latency_ms.get("p99")
    if bound is not None and f.common_p99.mean > bound:
        text += (", above the objective: at that load it needs more instances than the "
                 "throughput alone says")
    return text + _steady_only_text(f, d)


def _steady_only_text(f: Figures, d: Decision) -> str:
    if not f.steady_only:
        return ""
    stage = f.steady_only[0]
    everything = stage.get("all_measured")
    lat = everything["latency_ms"] if everything else None
    n = everything["discarded_windows"] if everything else 0
    return (f"; it meets {d.objective.describe()} in steady state only: at "
            f"{stage_load(stage)}, with the {n} window{'s' if n != 1 else ''} left out as "
            f"still settling, p99 was {fmt_ms(lat['p99'] if lat else None)} ms and max "
            f"{fmt_ms(lat['max'] if lat else None)} ms (see Warnings)")


#: What a single run's comparison lacks, and how to get it.
UNTESTED_ADVICE = "--trials 3 repeats every stage and tests the difference"


def _untested(a: Figures, b: Figures) -> str:
    """Why two p99s were compared by the 10% rule, not tested."""
    if a.common_p99_trials and b.common_p99_trials:
        return "not tested: the trials did not vary"
    return f"in one run, not tested: {UNTESTED_ADVICE}"


def _tie_text(best: Figures, other: Figures, d: Decision) -> str:
    costs = (f"{fmt_usd(other.monthly_usd.get(ARCH))} vs {fmt_usd(best.monthly_usd.get(ARCH))}"
             " a month (within the cost's uncertainty)")
    if best.common_p99 is None or other.common_p99 is None:
        return (f"**{other.name}** cannot be told apart from it: {costs}, and their latency "
                "could not be compared (no load that both ran). Choose between them on "
                "other grounds (operations, client languages, the questions below)")
    p = latency_differs(best, other)
    p99s = (f"p99 {fmt_est(other.common_p99, unit='ms')}{_invalid(other.common_stage)} vs "
            f"{fmt_est(best.common_p99, unit='ms')} ms{_invalid(best.common_stage)}")
    if p is None:
        return (f"**{other.name}** is as good by this run's figures: {costs}, {p99s} "
                f"(within {UNTESTED_TIE:.0%}, {_untested(best, other)}). "
                "Choose between them on other grounds (operations, client languages, the "
                "questions below)")
    return (f"**{other.name}** ties with it: {costs}, {p99s} (Welch p = {p:.2f} over "
            f"trials, not significant at {ALPHA:.0%}). Choose between them on other "
            "grounds (operations, client languages, the questions below)")


def _why_not(f: Figures, best: Figures, tier: tuple[Figures, ...], d: Decision) -> str:
    if not f.ok:
        return f"**{f.name}** failed: {f.error or 'unknown error'}"
    if not f.meets:
        return f"**{f.name}** does not meet {d.objective.describe()}: {f.miss}"
    if f.monthly_usd.get(ARCH) is None:
        why = ("it runs elsewhere, on hardware deploybench cannot see" if f.external
               else "no prices or platform records")
        return (f"**{f.name}** meets it, but its cost could not be estimated ({why}); "
                f"{_p99_text(f, d)}")
    if f not in tier:
        return f"**{f.name}** meets it but costs more: {_cost_text(f, d)}; {_p99_text(f, d)}"
    p = latency_differs(best, f)
    sig = (f" (more than {UNTESTED_TIE:.0%} apart, {_untested(best, f)})" if p is None
           else f" (Welch p = {p:.3f} over trials)")
    return (f"**{f.name}** meets it at a cost that cannot be told apart, but is slower: "
            f"{_p99_text(f, d)} against {fmt_est(best.common_p99, unit='ms')} ms{sig}")


def _recommend(best: Figures, ties: tuple[Figures, ...], d: Decision,
               label: str) -> list[str]:
    parts = [p for p in (_capacity_text(best, d), _cost_text(best, d), _p99_text(best, d))
             if p]
    lines = [f"{label} **{best.name}**. It meets {d.objective.describe()}: "
             + "; ".join(parts) + "."]
    lines += [_tie_text(best, other, d) + "." for other in ties]
    return lines


def objective_text(run: RunDoc, d: Decision) -> str:
    obj = d.objective
    latency = ("the default" if "latency" in obj.defaulted else "as given") + \
        " (set it with --slo, e.g. --slo p99=50ms,rps=500)"
    volume = ("the default" if "volume" in obj.defaulted else "as given") + \
        " (--monthly-requests)"
    budget = ("the default" if "errors" in obj.defaulted else "as given") + \
        " (--slo errors=0.5%)"
    return (f"Objective: {obj.describe()}, {latency}. Error budget: at most "
            f"{obj.error_budget:.2%} of requests may fail, {budget}; failed requests have "
            "no latency to time, so they are counted beside the percentiles, not in them. "
            "Expected traffic: "
            f"{fmt_volume(obj.monthly_requests)} requests a month, {volume}: "
            f"{fmt_rps(obj.average_rps)} req/s on average. Latencies are compared at "
            f"{describe_common(d.load)}, a load every deployment ran; costs use the prices "
            f"of {(run.get('prices') or {}).get('as_of', '-')} on {ARCH} (arm64 in the "
            "table below). `deploybench report RUN_DIR --slo ... --monthly-requests ...` "
            "re-decides for other figures without measuring again.")


def decision_items(d: Decision) -> list[str]:
    items: list[str] = []
    if d.best is None:
        measured = [f for f in d.figures if f.ok]
        unchecked = measured and all(f.miss and "predate validity verdicts" in f.miss
                                     for f in measured)
        if unchecked:
            items.append("**Cannot decide**: every stage of this run predates validity "
                         "verdicts (an old result file), so no figure can be relied on. "
                         "Measure again with this deploybench.")
        else:
            items.append(f"**No deployment met {d.objective.describe()}.**")
            items += [_why_not(f, f, (), d) + "." for f in d.figures]
        return items + set_aside_items(d) + break_even_items(d)
    items += _recommend(d.best, d.ties, d, "Recommended:")
    if d.best_service is not None:
        items += _recommend(d.best_service, d.service_ties, d,
                            "If the model must run as its own service (another language "
                            "calls it, or it scales apart from the application):")
    elif d.best.name == "inprocess":
        items.append("No served deployment meets the objective: only in-process does.")
    chosen = {d.best.name, *(f.name for f in d.ties)}
    if d.best_service is not None:
        chosen |= {d.best_service.name, *(f.name for f in d.service_ties)}
    for f in d.figures:
        if f.name in chosen:
            continue
        if d.best_service is not None and f.name != "inprocess":
            items.append(_why_not(f, d.best_service, d.service_tier, d) + ".")
        else:
            items.append(_why_not(f, d.best, d.tier, d) + ".")
    return items + set_aside_items(d) + break_even_items(d)


def set_aside_items(d: Decision) -> list[str]:
    """What the decision left out as another monitoring mode of a deployment it weighed."""
    if not d.set_aside:
        return []
    by_base: dict[str, list[str]] = {}
    for name, base in d.set_aside:
        by_base.setdefault(base, []).append(name)
    pairs = [f"{_names(names)} (weighed as {base})" for base, names in by_base.items()]
    return [f"Monitoring modes: {'; '.join(pairs)} measured the same deployment"
            f"{'s' if len(by_base) > 1 else ''} with metrics or a "
            "prediction log on (`run --monitoring`), so they are not candidates here: the "
            "decision compares each deployment in its lightest mode measured (off when it "
            "ran). What "
            "monitoring costs each one is under *What monitoring costs*."]


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + \
        f" and {names[-1]}"


def _ranges(start: bool, flips: list[float]) -> list[tuple[float | None, float | None]]:
    """The volume ranges where the always-on deployment is the cheaper one."""
    edges: list[float | None] = [None, *flips, None]
    state, out = start, []
    for low, high in itertools.pairwise(edges):
        if state:
            out.append((low, high))
        state = not state
    return out


def break_even_items(d: Decision) -> list[str]:
    """Pay-per-request against always-on, for the deployments that meet the objective."""
    meeting = [f for f in d.figures if f.meets and f.cost_model]
    serverless = [f for f in meeting if f.pay_per_request]
    always_on = [f for f in meeting if not f.pay_per_request]
    hours = d.objective.hours_per_month
    items = []
    for p in serverless:
        # Deployments of one size flip at the same volumes: one line for them.
        by_ranges: dict[tuple[tuple[float | None, float | None], ...], list[str]] = {}
        for a in always_on:
            start, flips = crossings(a, p, peak_rps=d.objective.rps)
            key = tuple((None if lo is None else float(f"{lo:.3g}"),
                         None if hi is None else float(f"{hi:.3g}"))
                        for lo, hi in _ranges(start, flips))
            by_ranges.setdefault(key, []).append(a.name)
        for ranges, names in by_ranges.items():
            who = _names(names)
            verb = "is" if len(names) == 1 else "are"
            if not ranges:
                items.append(f"Cost: {p.name} (pay per request) stays cheaper than {who} "
                             f"(always on) up to {fmt_volume(VOLUMES[1])} requests a month.")
            elif ranges == ((None, None),):
                items.append(f"Cost: {who} (always on) {verb} cheaper than {p.name} (pay per "
                             "request) at every volume.")
            elif len(ranges) == 1 and ranges[0][1] is None and ranges[0][0] is not None:
                volume = ranges[0][0]
                items.append(
                    f"Cost: {p.name} (pay per request) is cheaper than {who} (always on) "
                    f"below {fmt_volume(volume)} requests a month "
                    f"({fmt_rps(volume / (hours * 3600))} req/s on average); above that, "
                    f"{who} {verb} cheaper.")
            else:
                spans = ", ".join(_span(lo, hi) for lo, hi in ranges)
                items.append(
                    f"Cost: {who} (always on) {verb} cheaper than {p.name} (pay per "
                    f"request) {spans} requests a month, and {p.name} elsewhere: each added "
                    "instance costs a step, so the cheaper one alternates.")
    return items + [i for p in serverless for a in p.alternatives
                    if (i := _alternative_item(p, a, d))]


def _alternative_item(p: Figures, a: Figures, d: Decision) -> str | None:
    """Where paying for a Lambda result another way (provisioned concurrency, Managed
    Instances) becomes cheaper than on demand."""
    if a.cost_model is None:
        return None
    ranges = _ranges(*crossings(a, p, peak_rps=d.objective.rps))
    other = f"{p.name} with {a.way}"
    if not ranges:
        return (f"Cost: {p.name} on demand stays cheaper than {other} up to "
                f"{fmt_volume(VOLUMES[1])} requests a month.")
    if ranges == [(None, None)]:
        return f"Cost: {other} is cheaper than on demand at every volume."
    if len(ranges) == 1 and ranges[0][1] is None and ranges[0][0] is not None:
        volume = ranges[0][0]
        return (f"Cost: {p.name} on demand is cheaper than {other} below "
                f"{fmt_volume(volume)} requests a month "
                f"({fmt_rps(volume / (d.objective.hours_per_month * 3600))} req/s on "
                f"average); from there up, {a.way} costs less.")
    spans = ", ".join(_span(lo, hi) for lo, hi in ranges)
    return (f"Cost: {other} is cheaper than on demand {spans} requests a month: each added "
            "environment or instance costs a step, so the cheaper one alternates.")


def _span(low: float | None, high: float | None) -> str:
    if low is None:
        return f"below {fmt_volume(high or 0)}"
    if high is None:
        return f"above {fmt_volume(low)}"
    return f"from {fmt_volume(low)} to {fmt_volume(high)}"


AT_A_GLANCE = ("target", "meets", "max req/s within SLO", "p50 ms @ common", "p99 ms @ common",
               "min p50 ms", "cold start s", "memory MB", "CPU ms/req", "$/M req x86",
               "$/M req arm64", "$/month x86", "errors", "valid stages")


def unthrottled_item(d: Decision) -> str | None:
    """Lambda results that ran without their CPU share and memory limit enforced."""
    loose = [f.name for f in d.figures if f.unthrottled]
    if not loose:
        return None
    their = "their" if len(loose) > 1 else "its"
    return (f"**Unthrottled**: {_names(loose)} ran without the CPU share and memory limit "
            f"of {their} memory size enforced (each result's platform table says why): "
            "every environment had the full speed of the target CPUs, so "
            f"{their} latency, capacity and cost are a faster function's than AWS would "
            "run; they are compared here as measured.")


def at_a_glance(d: Decision) -> Table:
    rows = []
    for f in d.figures:
        if not f.ok:
            rows.append((f.name, "failed", *["-"] * (len(AT_A_GLANCE) - 4),
                         _errors(f), f"{f.valid}/{f.stages}"))
            continue
        common = f.common_stage
        p50 = common["latency_ms"]["p50"] if common and common["latency_ms"] else None
        memory = fmt_num(f.memory_mb, 0)
        if f.memory_total_mb and f.memory_mb and f.memory_total_mb > 1.5 * f.memory_mb \
                and f.pay_per_request:
            memory += f" (x envs: {fmt_num(f.memory_total_mb, 0)})"
        rows.append((
            f.name + (" (unthrottled)" if f.unthrottled else ""), "yes" if f.meets else "no",
            fmt_est(f.capacity), fmt_ms(p50) + _mark(common),
            fmt_est(f.common_p99, unit="ms") + _mark(common),
            fmt_ms(f.min_p50_ms) + _mark(f.min_p50_stage),
            (fmt_num(f.cold_start_ms / 1000.0, 2) + ("" if f.cold_start_measured else "‡"))
            if f.cold_start_ms is not None else "-",
            memory, fmt_num(f.cpu_ms_per_request, 3),
            fmt_usd(f.per_million_usd.get("x86_64")), fmt_usd(f.per_million_usd.get("arm64")),
            fmt_usd(f.monthly_usd.get("x86_64")), _errors(f), f"{f.valid}/{f.stages}",
        ))
    return Table(AT_A_GLANCE, tuple(rows), frozenset(range(2, len(AT_A_GLANCE) - 2)),
                 caption=(
        f"Every deployment against {d.objective.describe()}. †: from an INVALID stage. "
        "± is a 95% interval over the "
        "kept measurement windows (over trials with --trials). Common load: "
        f"{describe_common(d.load)}. Cold start: launch to first good answer (see Cold "
        "starts); ‡: the scenario measured none, so a stand-in: launch to healthy (served), "
        "model load (in-process) or the median request that met a new environment "
        "(Lambda). Memory: one instance's peak RSS (Lambda: one environment's Max Memory "
        "Used; x envs: all environments at the highest load; in-process: the model's share "
        "of the application's RSS). CPU per request at the common load. Cost per million "
        "at the expected volume: an always-on server's cost is spread over the requests "
        "it serves, so it falls as volume rises; Lambda's arm64 figure applies arm64 "
        "prices to durations measured on this x86_64 machine."))


def _mark(stage: StageResult | None) -> str:
    return "†" if stage is not None and not stage.get("valid", True) else ""


def _errors(f: Figures) -> str:
    return "-" if f.error_rate is None else f"{f.error_rate:.2%}"


def summary_blocks(run: RunDoc, d: Decision) -> list[Block]:
    loose = unthrottled_item(d)
    return [Paragraph(objective_text(run, d)),
            Bullets(tuple([*decision_items(d), *([loose] if loose else [])])),
            at_a_glance(d), *costsection.blocks(run, d)]
