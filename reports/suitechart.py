"""The index's chart per bundle: capacity within the objective and p99 at the common load,
per deployment (on x) and cell option (one bar each); a deployment that missed the
objective or did not run is marked on its axis, not drawn as a zero."""

from __future__ import annotations

from typing import Any

from reports.chartbase import DPI, png_of
from reports.suitecells import SuiteCell

#: Bars spanning more than this factor are drawn on a log scale: in-process's capacity can
#: be 20x a served deployment's (digits on 2 cores), which would flatten the others' bars.
LOG_SCALE = 20.0
#: Two panels side by side: wider than a run report's chart.
SIZE = (11.0, 4.4)


#: One bar: its height (None: no figure) and whether it is from an INVALID stage (hatched).
Bar = tuple[float | None, bool]


def _series(cells: list[SuiteCell], with_scenario: bool) -> tuple[
        list[str], list[tuple[str, dict[str, Bar], dict[str, Bar]]]]:
    """The deployments in order, and per cell its label, capacities and p99s."""
    names: list[str] = []
    series = []
    for c in cells:
        if c.decision is None:
            continue
        caps: dict[str, Bar] = {}
        p99s: dict[str, Bar] = {}
        for f in c.decision.figures:
            if f.name not in names:
                names.append(f.name)
            caps[f.name] = (f.capacity.median if f.capacity else None, False)
            invalid = f.common_stage is not None and not f.common_stage.get("valid", True)
            p99s[f.name] = (f.common_p99.median if f.common_p99 else None, invalid)
        label = c.label(with_scenario) + ("" if c.complete else f" ({c.record['status']})")
        series.append((label, caps, p99s))
    return names, series


def _panel(ax: Any, names: list[str], bars: list[dict[str, Bar]], ylabel: str,
           missing: str) -> None:
    width = 0.8 / max(1, len(bars))
    for i, values in enumerate(bars):
        for n, name in enumerate(names):
            if name not in values:  # not in this cell: nothing to say
                continue
            x = n + (i - (len(bars) - 1) / 2) * width
            height, invalid = values[name]
            if height is None:
                # At the axis's foot whatever its scale (a log axis has no 0).
                ax.annotate(missing, (x, 0), xycoords=ax.get_xaxis_transform(),
                            xytext=(0, 3), textcoords="offset points",
                            ha="center", va="bottom", rotation=90, fontsize=8,
                            color="crimson")
            else:
                ax.bar(x, height, width, color=f"C{i}", hatch="//" if invalid else None,
                       edgecolor="white" if invalid else None)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    heights = [h for values in bars for h, _ in values.values() if h is not None and h > 0]
    if heights and max(heights) > LOG_SCALE * min(heights):
        ax.set_yscale("log")
        ylabel += ", log scale"
    ax.set_ylabel(ylabel)


def render(cells: list[SuiteCell]) -> bytes | None:
    """One bundle's chart as PNG; None when no cell has figures."""
    with_scenario = len({c.record["scenario"] for c in cells}) > 1
    names, series = _series(cells, with_scenario)
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, (left, right) = plt.subplots(1, 2, figsize=SIZE, dpi=DPI)
    for ax in (left, right):
        ax.grid(True, axis="y", alpha=0.3)
    _panel(left, names, [caps for _, caps, _ in series],
           "capacity within the objective (req/s)", "missed")
    left.set_title("Capacity within the objective (one instance)")
    _panel(right, names, [p99s for _, _, p99s in series], "p99 at the common load (ms)",
           "no figure")
    right.set_title("p99 at each cell's common load (hatched: INVALID)")
    left.legend(handles=[Patch(color=f"C{i}", label=label)
                         for i, (label, _, _) in enumerate(series)],
                fontsize=8, title="cell", title_fontsize=8)
    return png_of(fig, any(c.simulated for c in cells))
