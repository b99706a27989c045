"""Charts drawn with matplotlib from ``run.json`` alone; each returns PNG bytes.

matplotlib is imported lazily (it is slow to import) and always with the Agg backend,
so charts render on machines with no display.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from reports import batching
from reports.breakdown import COMPONENTS, breakdown
from reports.chartbase import DPI, SIZE
from reports.chartbase import figure as _figure
from reports.chartbase import png as _png
from reports.costchart import cost_vs_volume
from reports.decision import figures
from reports.encodings import applies, rows
from reports.loads import at_load, common_load, describe_common
from reports.objective import objective
from reports.schema import RunDoc, StageResult, TargetResult
from reports.stageblocks import TimelinePoint
from reports.timeline import has_memory, has_timeline
from reports.timeline import stages as timeline_stages
from reports.trials import level_key


def _measured(run: RunDoc) -> list[TargetResult]:
    return [t for t in run["targets"] if t["status"] == "ok" and _closed(t)]


def _levels(t: TargetResult, mode: str) -> list[tuple[float, float, float | None]]:
    """(level, req/s, p99 ms) per load level of ``mode``, the median over trials: the
    level is the users of a closed-loop stage, the offered rate of an open-loop one
    (whose p99 counts from each request's intended send time)."""
    groups: dict[Any, list[StageResult]] = {}
    for s in t["stages"]:
        if s.get("mode", "closed") == mode and (mode != "closed" or s["concurrency"]):
            key = s["concurrency"] if mode == "closed" else level_key(s)
            groups.setdefault(key, []).append(s)
    out = []
    for stages in groups.values():
        level: float = (stages[0]["concurrency"] or 0) if mode == "closed" else float(np.median(
            [float((ol["rate"] if (ol := s.get("open_loop")) else None) or 0.0)
             for s in stages]))
        p99s = [s["latency_ms"]["p99"] for s in stages if s["latency_ms"]]
        out.append((level, float(np.median([s["rps"] for s in stages])),
                    float(np.median(p99s)) if p99s else None))
    return sorted(out, key=lambda row: row[0])


def _closed(t: TargetResult) -> list[tuple[float, float, float | None]]:
    """(users, req/s, p99 ms) per closed-loop level: the median over trials."""
    return _levels(t, "closed")


def throughput_vs_concurrency(run: RunDoc) -> bytes:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = _figure()
    levels: set[float] = set()
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
    return _png(fig, run)


def p99_vs_throughput(run: RunDoc) -> bytes:
    fig, ax = _figure()
    drawn = 0
    for t in run["targets"]:
        if t["status"] != "ok":
            continue
        points = [(rps, p99, users) for users, rps, p99 in _closed(t) if p99 is not None]
        colour = None
        if points:
            (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                              label=t["name"])
            colour = line.get_color()
            drawn += 1
            for x, y, users in points:
                ax.annotate(f"{users}", (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
        # Open-loop stages apart: markers only, at the throughput achieved (their p99
        # counts from the intended send time), each labelled by the rate offered.
        rates = [(rps, p99, offered) for offered, rps, p99 in _levels(t, "open")
                 if p99 is not None]
        if rates:
            ax.plot([p[0] for p in rates], [p[1] for p in rates], marker="s",
                    linestyle="none", color=colour, label=f"{t['name']} (open loop)")
            drawn += 1
            for x, y, offered in rates:
                ax.annotate(f"{offered:,.4g}/s", (x, y), textcoords="offset points",
                            xytext=(4, -10), fontsize=7)
    _slo_line(ax, run)
    # Log when there are points (all positive: a latency): the axis then says so. The
    # limits are not the test: autoscale's margin takes them below 0 for a wide range.
    logged = drawn > 0 and _positive_data(ax)
    if logged:
        ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (successful requests/s)")
    ax.set_ylabel("p99 latency (ms, log scale)" if logged else "p99 latency (ms)")
    ax.set_title("p99 latency vs throughput (labels: users in closed loop, "
                 "offered rate in open loop)", fontsize=10)
    if drawn:
        ax.legend()
    return _png(fig, run)


def _positive_data(ax: Any) -> bool:
    """Whether every y value of the lines drawn is above 0 (a log axis can show them)."""
    values = [y for line in ax.get_lines() for y in line.get_ydata()]
    return bool(values) and min(values) > 0


def _slo_line(ax: Any, run: RunDoc, vertical: bool = False) -> None:
    """The p99 objective as a dashed line (vertical when latency is the x axis)."""
    p99 = objective(run).latency_ms.get("p99")
    if p99 is not None:
        draw = ax.axvline if vertical else ax.axhline
        draw(p99, color="crimson", linestyle="--", linewidth=1,
             label=f"objective: p99 <= {p99:g} ms")


def latency_cdf(run: RunDoc) -> bytes:
    """Each target's latency distribution at the common load (log x, tail stretched)."""
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
    return _png(fig, run)


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
        cold = t.get("cold_starts")
        samples = cold.get("samples", []) if cold and cold["supported"] else []
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
    return _png(fig, run)


def memory(run: RunDoc) -> bytes:
    fig, ax = _figure()
    figs = figures(run)
    _bars([f.name for f in figs], [f.memory_mb for f in figs], ax)
    ax.set_ylabel("memory (MB): peak RSS of one instance")
    ax.set_title("Memory per target (Lambda: one environment; in-process: the model's share)")
    return _png(fig, run)


def time_breakdown(run: RunDoc) -> bytes:
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
    return _png(fig, run)


def payload_encodings(run: RunDoc) -> bytes:
    """Per result of the "Payload encodings" section: request bytes and p50 at the
    common load, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    involved, load, _ = rows(run)
    names = [t["name"] for t in involved]
    sizes: list[float | None] = [codec["request_bytes"] if (codec := t.get("codec")) else None
                                 for t in involved]
    p50s = []
    for t in involved:
        values = [s["latency_ms"]["p50"] for s in at_load(t, load) if s["latency_ms"]]
        p50s.append(float(np.median(values)) if values else None)
    fig, (left, right) = plt.subplots(1, 2, figsize=SIZE, dpi=DPI)
    for ax in (left, right):
        ax.grid(True, axis="y", alpha=0.3)
    _bars(names, sizes, left)
    left.set_ylabel("request size (bytes, one example)")
    left.set_title("Request size")
    _bars(names, p50s, right)
    right.set_ylabel("p50 latency (ms)")
    right.set_title(f"p50 at {describe_common(load)}")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _png(fig, run)


def batch_sizes(run: RunDoc) -> bytes:
    """Per batched result (a panel each): the share of its forward passes by requests
    served, a bar per load level side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ps = batching.pairs(run)
    columns = min(2, len(ps))
    rows = -(-len(ps) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(SIZE[0], 0.5 + 2.6 * rows), dpi=DPI,
                             squeeze=False, sharey=True)
    for ax in axes.flat[len(ps):]:
        ax.set_visible(False)
    for index, (ax, p) in enumerate(zip(axes.flat, ps, strict=False)):
        loads = batching.levels(p.batched)
        width = 0.8 / max(1, len(loads))
        for i, load in enumerate(loads):
            sizes = batching.sizes_at(p.batched, load)
            total = sum(sizes.values())
            if total:
                ax.bar([k - 0.4 + width * (i + 0.5) for k in sizes],
                       [v / total for v in sizes.values()], width,
                       label=batching.load_text(load))
        ax.set_title(p.batched["name"], fontsize=9)
        if index % columns == 0:
            ax.set_ylabel("share of forward passes", fontsize=8)
        if index >= len(ps) - columns:
            ax.set_xlabel("requests per forward pass", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))  # whole requests
        ax.tick_params(labelsize=8)
        if loads:
            ax.legend(fontsize=7)
    return _png(fig, run)


def _timeline_lines(run: RunDoc) -> list[tuple[str, StageResult]]:
    out = []
    for t in run["targets"]:
        if t["status"] != "ok":
            continue
        found = timeline_stages(t)
        for s in found:
            label = t["name"] + (f" #{s.get('trial', 0) + 1}" if len(found) > 1 else "")
            out.append((label, s))
    return out


def _segment_edges(axes: Sequence[Any], stage: StageResult | None) -> None:
    """The segment edges as dashed lines, each segment's label at the top."""
    if stage is None:
        return
    segments = stage["timeline"]["segments"]
    for i, seg in enumerate(segments):
        for ax in axes:
            if i:
                ax.axvline(seg["start_s"], color="grey", linestyle="--", linewidth=1)
        axes[0].annotate(f"{seg['label']} ({seg['users']} users)", (seg["start_s"], 1.0),
                         xycoords=("data", "axes fraction"), xytext=(3, -10),
                         textcoords="offset points", fontsize=7, color="dimgrey")


def _steps(series: list[TimelinePoint], key: Literal["p99_ms", "rps"]
           ) -> tuple[list[float], list[float]]:
    """A series as steps over each interval (its point holds from the previous one)."""
    xs = [0.0] + [float(p["t"]) for p in series]
    ys = [np.nan if (v := p[key]) is None else float(v) for p in series]
    return xs, ys[:1] + ys


def timeline(run: RunDoc) -> bytes:
    """p99 latency (top) and throughput (bottom) every sample_s, per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(SIZE[0], SIZE[1] * 1.5), dpi=DPI,
                                      sharex=True)
    lines = _timeline_lines(run)
    for label, s in lines:
        series = s["timeline"]["series"]
        top.plot(*_steps(series, "p99_ms"), drawstyle="steps-pre", label=label)
        bottom.plot(*_steps(series, "rps"), drawstyle="steps-pre", label=label)
    _segment_edges([top, bottom], lines[0][1] if lines else None)
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    sample_s = lines[0][1]["timeline"]["sample_s"] if lines else 1.0
    top.set_ylabel(f"p99 latency (ms, per {sample_s:g} s)")
    bottom.set_ylabel("throughput (successful requests/s)")
    bottom.set_xlabel("seconds since the timeline's start (after the warm-up)")
    top.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    top.set_title("p99 latency and throughput over the timeline (dashed: segment edges)")
    if lines:
        top.legend(fontsize=8, loc="best")
    return _png(fig, run)


def timeline_memory(run: RunDoc) -> bytes:
    """Each target's resident memory over the timeline, as its change since the start
    (targets hold very different amounts; the growth is what compares), with its slope."""
    fig, ax = _figure()
    lines = _timeline_lines(run)
    for label, s in lines:
        memory = s["timeline"]["memory"]
        points = [(float(p["t"]), float(rss)) for p in s["timeline"]["series"]
                  if (rss := p["rss_mb"]) is not None]
        start_mb = memory["start_mb"]
        if start_mb is None or not points:
            continue
        start = float(start_mb)
        slope = memory["slope_mb_per_min"]
        text = f" ({start:,.0f} MB at start" + (
            "" if slope is None else f", {slope:+.2f} MB/min") + ")"
        points.insert(0, (0.0, start))
        ax.plot([p[0] for p in points], [p[1] - start for p in points], marker=".",
                label=label + text)
    _segment_edges([ax], lines[0][1] if lines else None)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("seconds since the timeline's start (after the warm-up)")
    ax.set_ylabel("RSS change since the start (MB)")
    ax.set_title("Memory growth over the timeline (legend: RSS at start, least-squares slope)")
    if lines:
        ax.legend(fontsize=8)
    return _png(fig, run)


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


def _encodings_apply(run: RunDoc) -> bool:
    return applies(run)


def _timeline_applies(run: RunDoc) -> bool:
    return has_timeline(run)


def _timeline_memory_applies(run: RunDoc) -> bool:
    return has_memory(run)


#: Charts of a section only some runs have, each drawn only when its section is there.
SECTION_CHARTS: dict[str, tuple[Callable[[RunDoc], bool], Callable[[RunDoc], bytes]]] = {
    "encodings": (_encodings_apply, payload_encodings),
    "batching": (batching.applies, batch_sizes),
    "timeline": (_timeline_applies, timeline),
    "timeline_memory": (_timeline_memory_applies, timeline_memory),
}


def render_all(run: RunDoc) -> dict[str, bytes]:
    drawn = {name: draw(run) for name, draw in CHARTS.items()}
    drawn.update({name: draw(run) for name, (applies, draw) in SECTION_CHARTS.items()
                  if applies(run)})
    return drawn
