"""The report's section on timeline stages (the ``spike`` and ``soak`` scenarios).

Per target, a table of its segments; for every target, the memory growth over the
timeline; and two charts (:func:`reports.charts.timeline` and
:func:`reports.charts.timeline_memory`). Built from ``run.json`` alone, as every section.
"""

from __future__ import annotations

from reports.blocks import Block, Chart, Heading, Paragraph, Table
from reports.format import fmt_ms, fmt_num, fmt_pct, fmt_rps, fmt_verdict, stage_load
from reports.schema import RunDoc, StageResult, TargetResult
from reports.stageblocks import TimelineSegment

#: What the load generator keeps per request (harness.loadgen.recorder: three doubles, three
#: bytes), so in-process memory growth can be read against it.
RECORDER_BYTES_PER_REQUEST = 27

SEGMENT_HEADERS = ("segment", "users", "s", "requests", "req/s", "p50 ms", "p99 ms",
                   "max ms", "errors", "cold starts", "loadgen CPU", "target CPU")
MEMORY_HEADERS = ("target", "load", "RSS start MB", "RSS end MB", "growth MB",
                  "slope MB/min", "peak MB", "readings")


def stages(target: TargetResult) -> list[StageResult]:
    return [s for s in target["stages"] if s.get("mode") == "timeline" and s.get("timeline")]


def has_timeline(run: RunDoc) -> bool:
    return any(stages(t) for t in run["targets"] if t["status"] == "ok")


def has_memory(run: RunDoc) -> bool:
    return any((s["timeline"].get("memory") or {}).get("readings")
               for t in run["targets"] if t["status"] == "ok" for s in stages(t))


def _where(target: TargetResult, stage: StageResult) -> str:
    trials = len(stages(target)) > 1
    return f"{target['name']}" + (f" #{stage.get('trial', 0) + 1}" if trials else "")


def _slope(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def segment_table(target: TargetResult, stage: StageResult) -> Table:
    rows = []
    for seg in stage["timeline"]["segments"]:
        rows.append((
            seg["label"], str(seg["users"]), fmt_num(seg["duration_s"], 1),
            str(seg["requests"]), fmt_rps(seg["rps"]), fmt_ms(seg["p50_ms"]),
            fmt_ms(seg["p99_ms"]), fmt_ms(seg["max_ms"]),
            f"{seg['errors']} ({seg['error_rate']:.1%})", str(seg["cold_requests"]),
            fmt_pct(seg.get("loadgen_cpu_percent")), fmt_pct(seg.get("target_cpu_percent")),
        ))
    return Table(SEGMENT_HEADERS, tuple(rows), frozenset(range(1, len(SEGMENT_HEADERS))),
                 caption=f"{_where(target, stage)}: {stage_load(stage)}, one row per "
                         f"segment, verdict {fmt_verdict(stage)}. Requests sent in each "
                         "segment; latency nearest-rank over its successful ones; cold "
                         "starts: answers the target marked as from a new environment "
                         "(Lambda; 0 where it marks none); CPU over the segment.")


def memory_table(run: RunDoc) -> Table:
    rows = []
    notes = []
    for t in run["targets"]:
        if t["status"] != "ok":
            continue
        for s in stages(t):
            m = s["timeline"].get("memory") or {}
            rows.append((_where(t, s), stage_load(s), fmt_num(m.get("start_mb"), 1),
                         fmt_num(m.get("end_mb"), 1), _signed(m.get("growth_mb")),
                         _slope(m.get("slope_mb_per_min")), fmt_num(m.get("peak_mb"), 1),
                         str(m.get("readings", 0))))
            if t["loadgen"].get("target_in_loadgen"):
                samples_mb = _requests(s) * RECORDER_BYTES_PER_REQUEST / 1e6
                notes.append(f"{t['name']}'s RSS is the load generator's process, model and "
                             f"Locust together: its per-request samples alone grow by about "
                             f"{RECORDER_BYTES_PER_REQUEST} bytes a request "
                             f"({samples_mb:.1f} MB over this timeline)")
    caption = ("Resident memory (RSS) summed over each target's processes, read every "
               "sample_s over the measured timeline (after the warm-up); slope: the "
               "least-squares line through the readings. At a steady number of processes "
               "a steady positive slope is a leak or a cache still filling; a new process "
               "(Lambda scaling out, a restarted worker) adds its whole RSS, and pages "
               "shared between processes count once per process; '-': not measured (a "
               "target on another machine)"
               + "".join(f". {n}" for n in notes) + ".")
    return Table(MEMORY_HEADERS, tuple(rows), frozenset(range(2, len(MEMORY_HEADERS))),
                 caption=caption)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def _requests(stage: StageResult) -> int:
    return sum(int(seg["requests"]) for seg in stage["timeline"]["segments"])


def summary_lines(run: RunDoc) -> list[str]:
    """One line per target and timeline stage, for the summary and the console."""
    out = []
    for t in run["targets"]:
        if t["status"] != "ok":
            continue
        for s in stages(t):
            segments: list[TimelineSegment] = s["timeline"]["segments"]
            parts = ["p99 " + " → ".join(f"{fmt_ms(g['p99_ms'])} ms ({g['label']})"
                                           for g in segments)]
            cold = sum(int(g["cold_requests"]) for g in segments)
            if cold:
                parts.append("cold starts " + ", ".join(
                    f"{g['cold_requests']} in {g['label']}" for g in segments
                    if g["cold_requests"]))
            m = s["timeline"].get("memory") or {}
            if m.get("growth_mb") is not None:
                parts.append(f"RSS {_signed(m['growth_mb'])} MB over the timeline "
                             f"({_slope(m.get('slope_mb_per_min'))} MB/min)")
            invalid = "" if s.get("valid", True) else " [INVALID: see INVALID stages]"
            out.append(f"**{_where(t, s)}** {stage_load(s)}: " + "; ".join(parts) + invalid)
    return out


def section(run: RunDoc) -> list[Block]:
    if not has_timeline(run):
        return []
    sample_s = next(s["timeline"]["sample_s"] for t in run["targets"] if t["status"] == "ok"
                    for s in stages(t))
    blocks: list[Block] = [
        Heading("Timeline"),
        Paragraph("A timeline runs its segments back to back in one Locust run: the number "
                  "of users changes at once at each segment's edge, with a warm-up only "
                  "before the first segment and a cool-down and drain only after the last. "
                  "No stability rule applies (the load changes on purpose); each segment "
                  "must hold enough requests for its p99 (662), keep its error rate within "
                  "the scenario's bound and its load generator below 90% of a core. "
                  f"The series has one point every {sample_s:g} s: requests *completed* in "
                  "it (as a monitoring dashboard shows them), while the segment tables "
                  "count requests *sent* in each segment."),
        Chart("timeline", "p99 latency and throughput over the timeline",
              f"Two panels against seconds since the timeline's start: p99 latency (ms) "
              f"and throughput (successful requests/s) every {sample_s:g} s, one line per "
              "target, segment edges as dashed vertical lines"),
    ]
    if has_memory(run):
        blocks += [
            Chart("timeline_memory", "Memory over the timeline",
                  "Change of each target's resident memory (MB, RSS of its processes) "
                  "since the timeline's start against seconds since then, one line per "
                  "target, with its RSS at the start and its slope in MB/min"),
            memory_table(run),
        ]
    for t in run["targets"]:
        if t["status"] != "ok":
            continue
        for s in stages(t):
            blocks += [Heading(f"{_where(t, s)}: segments", 3), segment_table(t, s)]
    return blocks
