"""The cost chart: monthly cost against monthly requests for every priced deployment, the
other ways to pay for the cheapest Lambda size (provisioned concurrency, Managed
Instances), and the break-even points where the cheaper one changes."""

from __future__ import annotations

from typing import Any

import numpy as np

from reports.chartbase import figure, png
from reports.costs import VOLUMES, crossings, monthly_cost_at
from reports.costsection import cheapest_lambda, passed_over
from reports.decision import Decision, decide
from reports.figures import Figures
from reports.objective import objective
from reports.schema import RunDoc

#: Line styles by way to pay.
STYLES = {"on demand": "--", "provisioned concurrency": "-.", "managed instances": ":",
          "always on": "-"}


def _breaks(ax: Any, a: Figures, p: Figures, volumes: Any, peak: float | None,
            above: bool = False) -> None:
    """Dots where ``a`` and ``p`` change places as the cheaper one, labelled below the
    dot; or, for the other ways to pay (``above``), hollow and only the first labelled,
    above it: their steps can flip many times close together."""
    for i, v in enumerate(crossings(a, p, peak_rps=peak)[1]):
        cost = monthly_cost_at(p, v, peak_rps=peak)
        if cost is None or v > volumes[-1]:
            continue
        ax.plot([v], [cost], "o", markersize=4, color="k",
                markerfacecolor="none" if above else "k")
        if not above or i == 0:
            ax.annotate(f"{v / 1e6:,.3g}M", (v, cost), textcoords="offset points",
                        xytext=(4, 4 if above else -10), fontsize=7)


def series(d: Decision) -> tuple[list[Figures], list[Figures]]:
    """The chart's lines: (every priced deployment, the other ways to pay for the cheapest
    Lambda size only, so that several sizes keep the chart readable)."""
    cheapest = cheapest_lambda(d)
    return ([f for f in d.figures if f.cost_model],
            list(cheapest.alternatives) if cheapest is not None else [])


def cost_vs_volume(run: RunDoc) -> bytes:
    """Monthly cost against monthly requests, with the break-even points marked."""
    fig, ax = figure()
    obj = objective(run)
    d = decide(run, obj)
    figs, others = series(d)
    cheapest = cheapest_lambda(d)
    volumes = np.geomspace(VOLUMES[0], VOLUMES[1] / 10, 500)
    # Always-on deployments of one size draw the same line: widest first, so each shows.
    widths = iter(np.linspace(5.0, 1.5, max(1, len(figs) + len(others))))
    for f in [*figs, *others]:
        costs = [monthly_cost_at(f, v, peak_rps=obj.rps) for v in volumes]
        alternative = any(f is o for o in others)
        kind = "on demand" if f.pay_per_request else "always on"
        label = f.name if alternative else f"{f.name} ({kind})"
        label += "" if f.meets else ", misses objective"
        ax.plot(volumes, costs, STYLES.get(f.way, "-"), label=label,
                linewidth=next(widths), alpha=0.85)
    meeting = [f for f in figs if f.meets]
    for p in (f for f in meeting if f.pay_per_request):
        for a in (f for f in meeting if not f.pay_per_request):
            _breaks(ax, a, p, volumes, obj.rps)
    if cheapest is not None and cheapest.meets:
        for a in others:
            _breaks(ax, a, cheapest, volumes, obj.rps, above=True)
    ax.axvline(obj.monthly_requests, color="grey", linestyle=":", linewidth=1,
               label="expected volume")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests per month (log scale)")
    ax.set_ylabel("cost per month (USD, x86_64, log scale)")
    title = "Cost per month vs traffic (dots: break-even points; hollow: other ways to pay)" \
        if others else "Cost per month vs traffic (dots: break-even points)"
    if others and cheapest is not None and len([f for f in figs if f.pay_per_request]) > 1:
        title += (f"\nother ways to pay drawn for {cheapest.name} (cheapest Lambda size"
                  + (" meeting the objective)" if passed_over(d) else ")"))
    ax.set_title(title, fontsize=10 if "\n" in title else None)
    if figs:
        ax.legend(fontsize=7)
    return png(fig, run)
