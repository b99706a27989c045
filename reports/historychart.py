"""A history's trend charts: per cell and metric, one line per deployment over the
entries in time order (x labelled by version and date)."""

from __future__ import annotations

import re

from reports import chartbase
from reports.history import TREND_METRICS, History, Trend

#: More x labels than this overlap at the chart's width (7 inches, 7-point text).
MAX_LABELS = 10


def chart_name(cell_id: str, metric: str) -> str:
    """A file-safe, unique-enough name: trend-CELL-METRIC."""
    return "trend-" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", cell_id) + f"-{metric}"


def trend_chart(history: History, series: dict[str, list[float | None]], metric: str,
                cell_id: str) -> bytes:
    what, unit = next((w, u) for m, w, u in TREND_METRICS if m == metric)
    fig, ax = chartbase.figure()
    xs = list(range(len(history.entries)))
    for name, values in series.items():
        points = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if points:
            ax.plot([x for x, _ in points], [v for _, v in points], marker="o", label=name)
    # Every entry's label up to MAX_LABELS; past that every k-th, the latest always.
    step = max(1, -(-len(xs) // MAX_LABELS))
    ticks = sorted({*xs[::-1][::step]})
    ax.set_xticks(ticks)
    ax.set_xticklabels([history.entries[x].label for x in ticks], fontsize=7)
    ax.set_ylabel(f"{what} ({unit})")
    ax.set_title(f"{cell_id}: {what}", fontsize=10)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    # The SIMULATED mark follows the latest run of the cell that has one.
    run = next((r for e in reversed(history.entries)
                if (r := history.run(e, cell_id)) is not None), None)
    assert run is not None  # a cell id comes from some entry's cells
    return chartbase.png(fig, run)


def render_all(history: History, trend: Trend) -> dict[str, bytes]:
    """chart name -> PNG, for every cell and metric with a value in some entry."""
    out = {}
    for cell_id, by_metric in trend.items():
        for metric, series in by_metric.items():
            if any(v is not None for values in series.values() for v in values):
                out[chart_name(cell_id, metric)] = trend_chart(history, series, metric,
                                                               cell_id)
    return out
