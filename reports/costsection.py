"""The cost section: every way to pay for each Lambda result (on demand, provisioned
concurrency, Managed Instances) next to the always-on servers, a month at the expected
volume, each with its prices' date and source; and what provisioned concurrency removes
(the cold starts on-demand would have at that volume, estimated from the run's own)."""

from __future__ import annotations

from reports.blocks import Block, Bullets, Heading, Paragraph, Table
from reports.costs import ARCH, init_ms
from reports.decision import Decision
from reports.figures import Figures
from reports.format import fmt_ms, fmt_usd, fmt_volume
from reports.schema import RunDoc
from reports.serverless import platform_init_ms
from reports.waystopay import MANAGED, PROVISIONED, cold_share

HEADERS = ("deployment", "way to pay", "sized as", "$/month x86_64", "$/month arm64",
           "$/1M req x86_64", "prices as of", "source")


def _row(f: Figures, name: str) -> tuple[str, ...]:
    return (name, f.way or "-", f.instance or "-", fmt_usd(f.monthly_usd.get("x86_64")),
            fmt_usd(f.monthly_usd.get("arm64")), fmt_usd(f.per_million_usd.get("x86_64")),
            f.prices_as_of or "-", f.prices_source or "-")


def lambdas(d: Decision) -> list[Figures]:
    """The Lambda results that were priced (each memory size is one)."""
    return [f for f in d.figures if f.pay_per_request and f.cost_model is not None]


def cheapest_lambda(d: Decision) -> Figures | None:
    """The Lambda result cheapest on demand at the expected volume (among those meeting the
    objective, if any do): the one whose other ways to pay the cost chart draws."""
    priced = [f for f in lambdas(d) if f.alternatives]
    pool = [f for f in priced if f.meets] or priced
    return min(pool, key=lambda f: f.monthly_usd.get(ARCH, 0.0)) if pool else None


def passed_over(d: Decision) -> bool:
    """Whether :func:`cheapest_lambda` chose among the sizes meeting the objective while
    some priced size does not (it may be cheaper)."""
    chart = cheapest_lambda(d)
    return chart is not None and chart.meets and any(
        not f.meets for f in lambdas(d) if f.alternatives)


def table(d: Decision) -> Table | None:
    rows = []
    for f in lambdas(d):
        rows.append(_row(f, f.name))
        rows += [_row(a, f.name) for a in f.alternatives]
    rows += [_row(f, f.name) for f in d.figures if f.way == "always on"]
    if not any(r[1] != "always on" for r in rows):
        return None
    return Table(HEADERS, tuple(rows), frozenset({3, 4, 5}), caption=(
        f"Every way to pay, a month at {fmt_volume(d.objective.monthly_requests)} requests"
        + (f" with a peak of {d.objective.rps:g} req/s" if d.objective.rps else "")
        + " (us-east-1, on-demand rates; arm64 applies arm64 prices to what was measured "
          "on this machine). Change the prices with --prices FILE."))


def rules(d: Decision) -> str:
    rate = "the objective's peak rate" if d.objective.rps else "the volume's average rate"
    return (
        "How each way to pay is priced, from this run's measurements: **on demand** from "
        "what the function billed per invocation (GB-s and requests; Init billed since "
        "2025-08-01). **Provisioned concurrency** keeps N environments initialised all "
        "month: N x memory GB x seconds in a month x the price per GB-second configured, "
        "plus each invocation's billed warm duration at the provisioned duration price and "
        f"the request fee, no Init; N is {rate} x the measured warm duration (Little's "
        "law), rounded up, at least 1: an average concurrency, so the requests that find all "
        "N busy spill over to on-demand environments and are billed on demand (their "
        "share from Erlang's loss formula at the average rate: 37.5% at 1 environment "
        "60% busy). **Managed Instances** (since 2025-11-30) run the "
        "function on EC2 instances Lambda manages, an environment serving several requests "
        "at once: instances x the EC2 on-demand price x (1 + the management fee) x hours, "
        "plus the request fee, no duration charge; an instance serves its vCPUs x 1,000 / "
        "the CPU ms a warm invocation used in its environment here (runs without that "
        "figure: the warm duration x the CPUs the environment had), and instances = "
        f"max(the minimum Lambda keeps, ceil({rate} / that)). "
        "These are estimates from the measured function, not measurements of those "
        "platforms: an environment serving requests concurrently on an instance is not "
        "measured here. The recommendation above compares deployments as measured; these "
        "compare what the same function costs paid differently.")


def _cold_start_item(run: RunDoc, f: Figures, volume: float) -> str | None:
    alt = next((a for a in f.alternatives if a.way == PROVISIONED), None)
    target = next((t for t in run["targets"] if t["name"] == f.name), None)
    if alt is None or target is None:
        return None
    cold, invocations = cold_share(target)
    init = init_ms(target)
    n = alt.instances or 1
    each = (f"each adding about the measured Init ({fmt_ms(init)} ms median, plus what AWS "
            f"adds, modelled as {fmt_ms(platform_init_ms(run))} ms) to its request's "
            "latency" if init is not None else "each adding its Init to its request")
    if not invocations:
        return None
    if cold:
        share = cold / invocations
        return (f"{f.name} with provisioned concurrency ({n} environment"
                f"{'s' if n != 1 else ''} kept warm): in the measured stages {cold:,} of "
                f"{invocations:,} invocations ({share:.2%}) met a new environment, so on "
                f"demand at {fmt_volume(volume)} requests a month would have an estimated "
                f"~{fmt_volume(share * volume)} cold starts, {each}. Provisioned "
                "environments remove them up to their number of concurrent requests. An "
                "estimate: the measured share x the monthly volume, at the measured stages' "
                "loads; AWS also recycles environments, which a short run does not show.")
    return (f"{f.name} with provisioned concurrency ({n} environment{'s' if n != 1 else ''} "
            f"kept warm): none of the {invocations:,} invocations in the measured stages met "
            "a new environment after their warm-ups, so at a steady load like theirs on "
            "demand has almost no cold starts to remove (estimate: the measured share, 0, x "
            f"the monthly volume). What it removes are the cold starts of scaling up and of "
            f"environments AWS recycles, {each}.")


def _cheapest_item(f: Figures, d: Decision) -> str:
    options = sorted([f, *f.alternatives], key=lambda x: x.monthly_usd.get(ARCH, 0.0))
    costs = ", ".join(f"{o.way} {fmt_usd(o.monthly_usd.get(ARCH))}" for o in options)
    return (f"{f.name}: at {fmt_volume(d.objective.monthly_requests)} requests a month the "
            f"cheapest way to pay is {options[0].way} ({costs} a month, x86_64).")


def blocks(run: RunDoc, d: Decision) -> list[Block]:
    t = table(d)
    if t is None:
        return []
    items = [_cheapest_item(f, d) for f in lambdas(d) if f.alternatives]
    volume = d.objective.monthly_requests
    items += [i for f in lambdas(d) if (i := _cold_start_item(run, f, volume))]
    chart = cheapest_lambda(d)
    if chart is not None and len(lambdas(d)) > 1:
        among = " among those meeting the objective" if passed_over(d) else ""
        items.append(f"The cost chart draws the other ways to pay for {chart.name} only: the "
                     f"Lambda size cheapest on demand at the expected volume{among}.")
    managed = any(a.way == MANAGED for f in lambdas(d) for a in f.alternatives)
    return [Heading("Every way to pay", 3), Paragraph(rules(d)), t,
            *([Bullets(tuple(items))] if items else []),
            *([] if managed else [Paragraph("Managed Instances are not priced: no Lambda "
                                            "result measured a warm duration.")])]
