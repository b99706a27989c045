"""A timeline stage's figures (``spike``, ``soak``; run by :mod:`harness.loadgen.timeline`):
each segment's, the series every ``sample_s``, the memory growth, and the verdict's
reasons (called by :func:`harness.loadgen.analysis.stats.summarize_stage`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.loadgen.analysis.latency import nearest_rank, summarize_latency
from harness.loadgen.analysis.validity import Rules, reasons
from harness.loadgen.protocol import RawStage, points
from reports.stageblocks import MemoryGrowth, TimelineBlock, TimelinePoint, TimelineSegment

#: Why a timeline has no stability verdict: said in run.json and in the report.
NO_STABILITY = ("not applied: a timeline changes its load on purpose, so its windows are "
                "not expected to agree; each segment is judged on its own")


def summarize(raw: RawStage, rules: Rules) -> tuple[TimelineBlock, list[str]]:
    """The timeline block of a stage's result, and why the stage is INVALID (empty: it
    is VALID). Segments take the requests *sent* in them (as every stage's window does);
    the series takes those *completed* in each interval (as a measurement window does,
    and as a monitoring dashboard would show them)."""
    assert raw.timeline is not None
    tl = raw.timeline
    ok, cold = raw.ok, raw.cold_flags()
    segments: list[TimelineSegment] = []
    why: list[str] = []
    for i, seg in enumerate(tl["segments"]):
        sent = (raw.start_s >= seg["start"]) & (raw.start_s < seg["end"])
        good = sent & ok
        n, n_ok = int(sent.sum()), int(good.sum())
        span = seg["end"] - seg["start"]
        lat = summarize_latency(raw.latency_ms[good])
        error_rate = (n - n_ok) / n if n else 0.0
        name = f"{seg['label'] or f'segment {i + 1}'} ({seg['users']} users)"
        segments.append({
            "label": seg["label"], "users": seg["users"], "seconds": seg["seconds"],
            "start_s": seg["start"] - raw.window_start, "duration_s": span,
            "requests": n, "ok": n_ok, "errors": n - n_ok, "error_rate": error_rate,
            "rps": n_ok / span if span > 0 else 0.0,
            "p50_ms": lat["p50"] if lat else None, "p99_ms": lat["p99"] if lat else None,
            "max_ms": lat["max"] if lat else None,
            # Requests the target marked as cold starts (Lambda: a new environment).
            "cold_requests": int((cold & good).sum()),
            "loadgen_cpu_percent": seg.get("loadgen_cpu_percent"),
            "target_cpu_percent": seg.get("target_cpu_percent"),
        })
        # The rules every stage's window meets, per segment; a segment's remedy is its
        # own length, not window_s.
        found = reasons(requests=n, ok_requests=n_ok, error_rate=error_rate,
                        loadgen_cpu_percent=seg.get("loadgen_cpu_percent"), stable=True,
                        instability=None, late=0, late_tolerance_ms=None, queued=0,
                        max_inflight=None, warmup_complete=True, rules=rules)
        why += [f"{name}: " + r.replace("lengthen window_s", "lengthen its seconds")
                for r in found]
    planned = int(tl.get("planned_segments", len(segments)))
    if len(segments) < planned:
        why.append(f"the timeline stopped after {len(segments)} of its {planned} segments")
    if not raw.warmup_complete:
        why.append("warm-up incomplete: not every user had an answer within warmup_max_s, "
                   "so fewer users than planned were sending")
    # Read over the measured timeline only: every sample_s from its start, and at its end.
    memory: list[dict[str, Any]] = tl.get("memory", [])
    return {
        "sample_s": tl["sample_s"],
        "stability": NO_STABILITY,
        "segments": segments,
        "series": _series(raw, float(tl["sample_s"]), memory),
        "memory": _growth(memory, raw.window_start),
    }, why


def _series(raw: RawStage, sample_s: float, memory: list[dict[str, Any]]
            ) -> list[TimelinePoint]:
    """One point per sample_s of the measured timeline: t is its end, in seconds from
    the timeline's start; users those of the segment at its middle (an edge falls a
    moment after the planned second); rss_mb the reading at its end (None where none
    was taken)."""
    done = raw.start_s + raw.latency_ms / 1000.0
    order = np.argsort(done, kind="stable")
    done, ok = done[order], raw.ok[order]
    latency, cold = raw.latency_ms[order], raw.cold_flags()[order]
    count = points(raw.window_end - raw.window_start, sample_s)
    edges = [raw.window_start + k * sample_s for k in range(count)] + [raw.window_end]
    cuts = np.searchsorted(done, edges, side="left")
    segments = raw.timeline["segments"] if raw.timeline else []
    readings = [(m["t"], m["rss_mb"]) for m in memory if m.get("rss_mb") is not None]
    out: list[TimelinePoint] = []
    for k in range(count):
        a, b = edges[k], edges[k + 1]
        sl = slice(int(cuts[k]), int(cuts[k + 1]))
        good = ok[sl]
        lat = np.sort(latency[sl][good])
        mid = (a + b) / 2
        users = next((s["users"] for s in segments if s["start"] <= mid < s["end"]),
                     segments[-1]["users"] if segments else None)
        # The reading nearest the point's end, within half an interval.
        near = min(readings, key=lambda r: abs(r[0] - b), default=None)
        rss = near[1] if near is not None and abs(near[0] - b) <= sample_s / 2 + 1e-6 \
            else None
        out.append({
            "t": b - raw.window_start, "users": users,
            "rps": float(good.sum()) / (b - a) if b > a else 0.0,
            "p50_ms": nearest_rank(lat, 0.5) if len(lat) else None,
            "p99_ms": nearest_rank(lat, 0.99) if len(lat) else None,
            "errors": int((~good).sum()), "cold": int((cold[sl] & good).sum()),
            "rss_mb": rss,
        })
    return out


def _growth(memory: list[dict[str, Any]], origin: float) -> MemoryGrowth:
    """RSS at the start and end of the measured timeline, and its least-squares slope."""
    points = [(m["t"], float(m["rss_mb"])) for m in memory if m.get("rss_mb") is not None]
    if not points:
        return {"readings": 0, "start_mb": None, "end_mb": None, "growth_mb": None,
                "slope_mb_per_min": None, "peak_mb": None,
                "note": "not measured: the target's processes are not on this machine"}
    t = np.array([(p[0] - origin) / 60.0 for p in points])
    rss = np.array([p[1] for p in points])
    slope = None
    if len(points) >= 2 and np.ptp(t) > 0:
        # A flat series is exactly flat (polyfit's rounding would say -2e-13).
        slope = float(np.polyfit(t, rss, 1)[0]) if np.ptp(rss) > 0 else 0.0
    return {"readings": len(points), "start_mb": float(rss[0]), "end_mb": float(rss[-1]),
            "growth_mb": float(rss[-1] - rss[0]), "slope_mb_per_min": slope,
            "peak_mb": float(rss.max())}
