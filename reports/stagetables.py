"""A target's stage tables, as the report and the console show them: one row per
stage (closed loop, open loop) with its figures and verdict."""

from __future__ import annotations

from reports.blocks import Table
from reports.format import fmt_ms, fmt_num, fmt_pct, fmt_rps, fmt_verdict, stage_load
from reports.schema import StageResult, TargetResult

STAGE_HEADERS = ("load", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
                 "failed", "target CPU", "CPU ms/req", "loadgen CPU", "RSS MB", "windows",
                 "verdict")


def has_trials(target: TargetResult) -> bool:
    """Whether the target's stages were run more than once (``--trials``)."""
    return any(s.get("trial", 0) for s in target["stages"])


def stage_table(target: TargetResult) -> Table:
    trials = has_trials(target)
    rows = []
    for s in target["stages"]:
        lat = s["latency_ms"]
        load = stage_load(s) + (f" #{s.get('trial', 0) + 1}" if trials else "")
        rows.append((
            load, fmt_rps(s["rps"]),
            fmt_ms(lat["p50"] if lat else None), fmt_ms(lat["p90"] if lat else None),
            fmt_ms(lat["p99"] if lat else None), fmt_ms(lat["p999"] if lat else None),
            fmt_ms(lat["max"] if lat else None),
            f"{s['errors']}/{s['requests']}",
            fmt_pct(s["target_cpu_percent"]), fmt_num(s["target_cpu_ms_per_request"], 3),
            fmt_pct(s["loadgen_cpu_percent"]), fmt_num(s["target_rss_mb"], 0),
            _windows(s),
            fmt_verdict(s),
        ))
    caption = (f"{target['name']}: one row per stage" + (" (#N: trial N)" if trials else "")
               + ". Open-loop latency counts from each request's intended send time. "
               "windows: reported/measured; earlier windows were discarded while the stage "
               "settled (their samples are in samples.csv.gz, phase 'discarded').")
    return Table(STAGE_HEADERS, tuple(rows), frozenset(range(1, len(STAGE_HEADERS) - 1)),
                 caption=caption)


OPEN_HEADERS = ("load", "offered/s", "req/s", "p50 ms", "p99 ms", "service p50",
                "service p99", "send delay p99", "late", "queued", "verdict")


def _windows(stage: StageResult) -> str:
    if stage.get("mode") == "timeline":  # no windows: its segments, under "Timeline"
        timeline = stage.get("timeline")
        return f"{len(timeline['segments']) if timeline else 0} segments"
    return f"{stage.get('windows_kept', 1)}/{len(stage.get('windows') or []) or 1}"


def open_loop_table(target: TargetResult) -> Table | None:
    rows = []
    for s in target["stages"]:
        ol = s.get("open_loop")
        if ol is None:
            continue
        lat, service, delay = s["latency_ms"], ol.get("service_latency_ms"), \
            ol.get("send_delay_ms")
        rows.append((
            stage_load(s), fmt_rps(ol.get("rate")), fmt_rps(s["rps"]),
            fmt_ms(lat["p50"] if lat else None), fmt_ms(lat["p99"] if lat else None),
            fmt_ms(service["p50"] if service else None),
            fmt_ms(service["p99"] if service else None),
            fmt_ms(delay["p99"] if delay else None),
            f"{ol.get('late', 0)}/{s['requests']}", f"{ol.get('queued', 0)}/{s['requests']}",
            fmt_verdict(s),
        ))
    if not rows:
        return None
    return Table(OPEN_HEADERS, tuple(rows), frozenset(range(1, len(OPEN_HEADERS) - 1)),
                 caption=f"{target['name']}, open-loop stages: p50/p99 from the intended send "
                         "time (what a caller waits), service p50/p99 from the actual send; "
                         "late: sent after the tolerance because the load generator was busy; "
                         "queued: waited for a free in-flight slot (target overloaded)")
