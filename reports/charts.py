"""Charts drawn with matplotlib from ``run.json`` alone; each returns PNG bytes.

matplotlib is imported lazily (it is slow to import) and always with the Agg backend,
so charts render on machines with no display.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from reports.schema import RunDoc, TargetResult

DPI = 110
SIZE = (7.0, 4.2)


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _measured(run: RunDoc) -> list[TargetResult]:
    return [t for t in run["targets"] if t["status"] == "ok" and _closed(t)]


def _closed(t: TargetResult) -> list[tuple[int, float, float | None]]:
    """(users, req/s, p99 ms) per closed-loop level: the median over trials."""
    by_level: dict[int, list[tuple[float, float | None]]] = {}
    for s in t["stages"]:
        if s.get("mode", "closed") == "closed" and s["concurrency"] is not None:
            lat = s["latency_ms"]
            by_level.setdefault(s["concurrency"], []).append(
                (s["rps"], lat["p99"] if lat else None))
    out = []
    for users, values in sorted(by_level.items()):
        p99s = [p for _, p in values if p is not None]
        out.append((users, float(np.median([r for r, _ in values])),
                    float(np.median(p99s)) if p99s else None))
    return out


def throughput_vs_concurrency(run: RunDoc) -> bytes:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = _figure()
    levels: set[int] = set()
    for t in _measured(run):
        points = _closed(t)
        levels.update(p[0] for p in points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=t["name"])
    ax.set_xscale("log", base=2)
    if levels:  # tick exactly the measured levels, written as plain numbers
        ax.set_xticks(sorted(levels))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("concurrent users (closed loop; median over trials)")
    ax.set_ylabel("throughput (successful requests/s)")
    ax.set_title(f"Throughput vs concurrency ({run['bundle'].get('name')})")
    ax.set_ylim(bottom=0)
    if _measured(run):
        ax.legend()
    return _png(fig)


def p99_vs_throughput(run: RunDoc) -> bytes:
    fig, ax = _figure()
    for t in _measured(run):
        points = [(rps, p99, users) for users, rps, p99 in _closed(t) if p99 is not None]
        if not points:
            continue
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=t["name"])
        for x, y, users in points:
            ax.annotate(f"{users}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (successful requests/s)")
    ax.set_ylabel("p99 latency (ms, log scale)")
    ax.set_title("p99 latency vs throughput, closed loop (labels: concurrent users)")
    if _measured(run):
        ax.legend()
    return _png(fig)


#: Every chart a report embeds, by the name the document's Chart blocks use.
CHARTS: dict[str, Callable[[RunDoc], bytes]] = {
    "throughput": throughput_vs_concurrency,
    "latency": p99_vs_throughput,
}


def render_all(run: RunDoc) -> dict[str, bytes]:
    return {name: draw(run) for name, draw in CHARTS.items()}
