"""Charts drawn with matplotlib from ``run.json`` alone; each returns PNG bytes.

matplotlib is imported lazily (it is slow to import) and always with the Agg backend,
so charts render on machines with no display.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
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
    _slo_line(ax, run)
    bottom, top = ax.get_ylim()
    if bottom > 0 and top > bottom:  # a log axis needs a range (not just the SLO line)
        ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (successful requests/s)")
    ax.set_ylabel("p99 latency (ms, log scale)")
    ax.set_title("p99 latency vs throughput, closed loop (labels: concurrent users)")
    if _measured(run):
        ax.legend()
    return _png(fig)


def _slo_line(ax: Any, run: RunDoc, vertical: bool = False) -> None:
    """The p99 objective as a dashed line (vertical when latency is the x axis)."""
    from reports.decision import objective

    p99 = objective(run).latency_ms.get("p99")
    if p99 is not None:
        draw = ax.axvline if vertical else ax.axhline
        draw(p99, color="crimson", linestyle="--", linewidth=1,
             label=f"objective: p99 <= {p99:g} ms")


def latency_cdf(run: RunDoc) -> bytes:
    """Each target's latency distribution at the common load (log x, tail stretched)."""
    from reports.decision import at_load, common_load, describe_common

    fig, ax = _figure()
    load = common_load(run)
    drawn = 0
    for t in run["targets"]:
        stages = at_load(t, load) if t["status"] == "ok" else []
        stage = stages[0] if stages else None
        cdf = stage.get("latency_cdf") if stage else None
        if stage is not None and not cdf and stage["latency_ms"]:
            lat = stage["latency_ms"]  # an older run: its percentiles only
            points = [(0.0, lat["min"]), (0.5, lat["p50"]), (0.9, lat["p90"]),
                      (0.95, lat["p95"]), (0.99, lat["p99"]), (1.0, lat["max"])]
            cdf = {"p": [p for p, _ in points], "ms": [v for _, v in points]}
        if not cdf:
            continue
        # y: the fraction answered within x, on a "nines" scale so the tail is visible.
        p = np.minimum(np.asarray(cdf["p"], dtype=float), 0.9999)
        ax.plot(cdf["ms"], -np.log10(1.0 - p), drawstyle="steps-post", label=t["name"])
        drawn += 1
    _slo_line(ax, run, vertical=True)
    ax.set_xscale("log")
    ticks = [0.0, 0.5, 0.9, 0.99, 0.999]
    ax.set_yticks([-np.log10(1.0 - q) for q in ticks])
    ax.set_yticklabels(["0", "50%", "90%", "99%", "99.9%"])
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("requests answered within (percentile)")
    ax.set_title(f"Latency distribution at {describe_common(load)}")
    if drawn:
        ax.legend()
    return _png(fig)


def _bars(names: list[str], values: Sequence[float | None], ax: Any,
          errors: list[tuple[float, float]] | None = None) -> None:
    xs = np.arange(len(names))
    heights = [v or 0.0 for v in values]
    bars = ax.bar(xs, heights, color="#4c78a8")
    if errors is not None:
        ax.errorbar(xs, heights, yerr=np.array(errors).T, fmt="none", ecolor="black",
                    capsize=4, linewidth=1)
    tops = [h + (e[1] if errors is not None else 0.0)
            for h, e in zip(heights, errors or [(0.0, 0.0)] * len(heights), strict=True)]
    for bar, v, top in zip(bars, values, tops, strict=True):
        ax.annotate("not measured" if v is None else f"{v:,.3g}",
                    (bar.get_x() + bar.get_width() / 2, top),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                    textcoords="offset points")
    ax.set_xticks(xs, names)
    ax.set_ylim(bottom=0)


def cold_start(run: RunDoc) -> bytes:
    """Launch to first good answer per target: median bar, min-max whisker."""
    fig, ax = _figure()
    names: list[str] = []
    values: list[float | None] = []
    errors: list[tuple[float, float]] = []
    for t in run["targets"]:
        cold = t.get("cold_starts") or {}
        samples = cold.get("samples", []) if cold.get("supported") else []
        totals = [s["total_s"] for s in samples]
        names.append(t["name"])
        if totals:
            mid = float(np.median(totals))
            values.append(mid)
            errors.append((mid - min(totals), max(totals) - mid))
        else:
            values.append(None)
            errors.append((0.0, 0.0))
    _bars(names, values, ax, errors)
    ax.set_ylabel("cold start (s): launch to first good answer")
    ax.set_title("Cold start per target (bar: median; whiskers: min to max)")
    return _png(fig)


def memory(run: RunDoc) -> bytes:
    from reports.decision import figures

    fig, ax = _figure()
    figs = figures(run)
    _bars([f.name for f in figs], [f.memory_mb for f in figs], ax)
    ax.set_ylabel("memory (MB): peak RSS of one instance")
    ax.set_title("Memory per target (Lambda: one environment; in-process: the model's share)")
    return _png(fig)


def cost_vs_volume(run: RunDoc) -> bytes:
    """Monthly cost against monthly requests, with the break-even points marked."""
    from reports.decision import VOLUMES, crossings, figures, monthly_cost_at, objective

    fig, ax = _figure()
    obj = objective(run)
    figs = [f for f in figures(run, obj) if f.cost_model]
    volumes = np.geomspace(VOLUMES[0], VOLUMES[1] / 10, 500)
    # Always-on deployments of one size draw the same line: widest first, so each shows.
    widths = iter(np.linspace(5.0, 1.5, max(1, len(figs))))
    for f in figs:
        costs = [monthly_cost_at(f, v, peak_rps=obj.rps) for v in volumes]
        kind = "pay per request" if f.pay_per_request else "always on"
        label = f"{f.name} ({kind})" + ("" if f.meets else ", misses objective")
        ax.plot(volumes, costs, "--" if f.pay_per_request else "-", label=label,
                linewidth=next(widths), alpha=0.85)
    meeting = [f for f in figs if f.meets]
    for p in (f for f in meeting if f.pay_per_request):
        for a in (f for f in meeting if not f.pay_per_request):
            for v in crossings(a, p, peak_rps=obj.rps)[1]:
                cost = monthly_cost_at(p, v, peak_rps=obj.rps)
                if cost is not None and v <= volumes[-1]:
                    ax.plot([v], [cost], "ko", markersize=4)
                    ax.annotate(f"{v / 1e6:,.3g}M", (v, cost), textcoords="offset points",
                                xytext=(4, -10), fontsize=7)
    ax.axvline(obj.monthly_requests, color="grey", linestyle=":", linewidth=1,
               label="expected volume")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests per month (log scale)")
    ax.set_ylabel("cost per month (USD, x86_64, log scale)")
    ax.set_title("Cost per month vs traffic (dots: break-even points)")
    if figs:
        ax.legend(fontsize=8)
    return _png(fig)


def time_breakdown(run: RunDoc) -> bytes:
    from reports.breakdown import COMPONENTS, breakdown

    fig, ax = _figure()
    rows = breakdown(run)
    names = [r.name for r in rows]
    left = np.zeros(len(rows))
    for key, label, colour in COMPONENTS:
        widths = np.array([r.parts.get(key, 0.0) for r in rows])
        ax.barh(names, widths, left=left, label=label, color=colour)
        left += widths
    ax.invert_yaxis()
    ax.set_xlabel("median latency (ms)")
    ax.set_title("Where the time goes per request (median), vs in-process")
    if rows:
        ax.legend(fontsize=8)
    return _png(fig)


#: Every chart a report embeds, by the name the document's Chart blocks use.
CHARTS: dict[str, Callable[[RunDoc], bytes]] = {
    "throughput": throughput_vs_concurrency,
    "latency": p99_vs_throughput,
    "cdf": latency_cdf,
    "breakdown": time_breakdown,
    "cold_start": cold_start,
    "memory": memory,
    "cost": cost_vs_volume,
}


def render_all(run: RunDoc) -> dict[str, bytes]:
    return {name: draw(run) for name, draw in CHARTS.items()}
