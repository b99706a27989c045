"""The "What monitoring costs" section's chart: per deployment, a bar per monitoring mode
for the change in throughput at the heaviest load every mode ran, and one for the change
in p99 at the lightest, against the deployment's lightest mode measured (off). Drawn only
when the section is there (:func:`reports.monitorcost.applies`)."""

from __future__ import annotations

import math
from collections.abc import Callable

from reports import monitorcost
from reports.chartbase import DPI, SIZE, png
from reports.decision import figures
from reports.monitormodes import groups, mode
from reports.schema import RunDoc
from targets.monitoring import MODES, OFF


def _throughput(r: monitorcost.Row) -> monitorcost.Change:
    return r.heavy_rps


def _p99(r: monitorcost.Row) -> monitorcost.Change:
    return r.light_p99


def bar_heights(per_group: list[dict[str, monitorcost.Row]], m: str,
                pick: Callable[[monitorcost.Row], monitorcost.Change]) -> list[float]:
    """Mode ``m``'s change per group, in percent. A mode a deployment did not run, or a
    figure it lacks, has no bar (NaN): a bar at 0% would read as "costs nothing"."""
    return [math.nan if m not in rows or (r := pick(rows[m]).ratio) is None else 100.0 * r
            for rows in per_group]


def monitoring(run: RunDoc) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gs = groups(run)
    figs = {f.name: f for f in figures(run)}
    per_group = [{r.mode: r for r in monitorcost.rows(g, figs)} for g in gs]
    modes = [m for m in MODES[1:] if any(m in rows for rows in per_group)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(SIZE[0], SIZE[1]), dpi=DPI)
    width = 0.8 / max(1, len(modes))
    xs = range(len(gs))
    for i, m in enumerate(modes):
        offsets = [x - 0.4 + width * (i + 0.5) for x in xs]
        for ax, pick in ((left, _throughput), (right, _p99)):
            ax.bar(offsets, bar_heights(per_group, m, pick), width, label=m)
    for ax, title in ((left, "throughput change, heaviest shared load (%)"),
                      (right, "p99 change, lightest shared load (%)")):
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([g.label for g in gs], rotation=30, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.tick_params(labelsize=8)
    if modes:
        # A group whose off result failed is compared with its lightest mode measured.
        base = "against off" if all(mode(g.base) == OFF.mode for g in gs) \
            else "against off, else the lightest mode run"
        left.legend(fontsize=7, title=base, title_fontsize=7)
    return png(fig, run)


def render_all(run: RunDoc) -> dict[str, bytes]:
    """The chart by name, when the run has the section (else nothing)."""
    return {"monitoring": monitoring(run)} if monitorcost.applies(run) else {}
