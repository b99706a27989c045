"""A report as a list of format-neutral blocks, built from ``run.json`` alone.

Each exporter (Markdown, HTML, console) renders the same blocks, so the formats cannot
drift apart: one place decides what a report says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reports import findings, serverless
from reports.format import fmt_cpus, fmt_ms, fmt_num, fmt_pct, fmt_rps
from reports.schema import RunDoc, StageResult, TargetResult


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: Columns to right-align (numbers).
    numeric: frozenset[int] = field(default_factory=frozenset)
    caption: str = ""


@dataclass(frozen=True)
class Chart:
    name: str  # the key in reports.charts.CHARTS
    title: str
    alt: str


Block = Heading | Paragraph | Bullets | Table | Chart

STAGE_HEADERS = ("users", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
                 "failed", "target CPU", "CPU ms/req", "loadgen CPU", "RSS MB")


def stage_table(target: TargetResult) -> Table:
    rows = []
    for s in target["stages"]:
        lat = s["latency_ms"]
        rows.append((
            str(s["concurrency"]), fmt_rps(s["rps"]),
            fmt_ms(lat["p50"] if lat else None), fmt_ms(lat["p90"] if lat else None),
            fmt_ms(lat["p99"] if lat else None), fmt_ms(lat["p999"] if lat else None),
            fmt_ms(lat["max"] if lat else None),
            f"{s['errors']}/{s['requests']}",
            fmt_pct(s["target_cpu_percent"]), fmt_num(s["target_cpu_ms_per_request"], 3),
            fmt_pct(s["loadgen_cpu_percent"]), fmt_num(s["target_rss_mb"], 0),
        ))
    return Table(STAGE_HEADERS, tuple(rows), frozenset(range(len(STAGE_HEADERS))),
                 caption=f"{target['name']}: one row per closed-loop stage")


def peak_stage(target: TargetResult) -> StageResult | None:
    stages = [s for s in target["stages"] if s["latency_ms"] is not None]
    return max(stages, key=lambda s: s["rps"]) if stages else None


def lowest_latency_stage(target: TargetResult) -> StageResult | None:
    stages = [s for s in target["stages"] if s["latency_ms"] is not None]
    return min(stages, key=lambda s: s["latency_ms"]["p50"]) if stages else None  # type: ignore[index]


def users(n: int) -> str:
    return f"{n} user" if n == 1 else f"{n} users"


def summary_items(run: RunDoc) -> list[str]:
    items = []
    measured = [t for t in run["targets"] if t["status"] == "ok" and peak_stage(t)]
    for t in run["targets"]:
        if t["status"] != "ok":
            items.append(f"**{t['name']}** failed: {t['error'] or 'unknown error'}")
            continue
        peak = peak_stage(t)
        low = lowest_latency_stage(t)
        cold = t.get("cold_starts") or {}
        cold_ms = (cold.get("total_ms") or {}).get("p50")
        cold_text = f"cold start p50 {fmt_ms(cold_ms)} ms" if cold_ms is not None else ""
        if peak is None or low is None:
            items.append(f"**{t['name']}**: {cold_text or 'no successful requests'}")
            continue
        assert peak["latency_ms"] is not None
        assert low["latency_ms"] is not None
        items.append(
            f"**{t['name']}**: peak {fmt_rps(peak['rps'])} req/s at {users(peak['concurrency'])}"
            f" (p99 {fmt_ms(peak['latency_ms']['p99'])} ms); lowest median latency "
            f"{fmt_ms(low['latency_ms']['p50'])} ms at {users(low['concurrency'])}"
            + (f"; {cold_text}" if cold_text else "")
        )
    if len(measured) >= 2:
        ranked = sorted(measured, key=lambda t: peak_stage(t)["rps"], reverse=True)  # type: ignore[index]
        best = ranked[0]
        best_rps = peak_stage(best)["rps"]  # type: ignore[index]
        for other in ranked[1:]:
            other_rps = peak_stage(other)["rps"]  # type: ignore[index]
            if other_rps > 0:
                items.append(
                    f"{best['name']} reached {best_rps / other_rps:.2f}x the peak throughput "
                    f"of {other['name']} (one run: treat differences under ~10% as noise)"
                )
    parity = [t for t in run["targets"] if t["parity"]]
    if parity:
        worst = max(t["parity"]["max_abs_diff"] for t in parity)  # type: ignore[index]
        n = parity[0]["parity"]["examples"]  # type: ignore[index]
        names = ", ".join(t["name"] for t in parity)
        items.append(
            f"Parity: {names} returned the in-process predictions on all {n} examples "
            f"(same class; probabilities within {worst:.1e})"
        )
    return items


def build(run: RunDoc) -> list[Block]:
    meta = run["metadata"]
    bundle = run["bundle"]
    scenario = run["scenario"]
    blocks: list[Block] = [
        Heading(f"deploybench report: {bundle.get('name')} bundle, {scenario.get('name')} "
                f"scenario", 1),
        Paragraph(f"Run {run['status']} at {meta.get('started_at')} on {meta.get('hostname')}: "
                  f"{meta.get('cpu_model')}; CPUs {fmt_cpus(meta.get('target_cpus'))} for the "
                  f"target, CPUs {fmt_cpus(meta.get('loadgen_cpus'))} for the load generator."),
        Heading("Summary"),
        Bullets(tuple(summary_items(run))),
    ]
    warnings = findings.warnings(run)
    if warnings:
        blocks += [Heading("Warnings"), Bullets(tuple(warnings))]
    blocks += [
        Heading("Charts"),
        Chart("throughput", "Throughput vs concurrency",
              "Requests per second at each number of concurrent users, one line per target"),
        Chart("latency", "p99 latency vs throughput",
              "p99 latency against achieved requests per second, one line per target"),
        Heading("Results per target"),
    ]
    for t in run["targets"]:
        blocks.append(Heading(t["name"], 3))
        if t["status"] != "ok":
            blocks.append(Paragraph(f"Failed: {t['error']}"))
            continue
        blocks.append(stage_table(t))
        platform = serverless.platform_table(t)
        if platform is not None:
            blocks.append(platform)
        blocks.append(Paragraph(describe_line(t)))
    cold = serverless.cold_start_table(run)
    if cold is not None:
        blocks += [Heading("Cold starts"), cold]
    blocks += [
        Heading("Cross-check with Locust's own statistics"),
        Paragraph("deploybench computes every figure from raw per-request samples. Locust's "
                  "own counters for the same windows are shown for comparison; its "
                  "percentiles are rounded to whole milliseconds below 100 ms."),
        crosscheck_table(run),
        Heading("How these numbers were measured"),
        Bullets(tuple(method_items(run))),
        Heading("Machine and versions"),
        machine_table(run),
    ]
    return blocks


def describe_line(t: TargetResult) -> str:
    d = t["describe"]
    parts = [f"runtime: {d.get('runtime')}", f"server: {d.get('server')}",
             f"CPUs {fmt_cpus(d.get('cpus'))}"]
    for key, label in (("workers", "workers"), ("threads_per_worker", "threads/worker"),
                       ("torch_threads_per_worker", "torch threads/worker"),
                       ("encoding", "encoding")):
        if d.get(key) is not None:
            parts.append(f"{label}: {d[key]}")
    if d.get("startup_s") is not None:
        parts.append(f"launch to first healthy answer: {d['startup_s']:.2f} s")
    load_s = t["loadgen"].get("load_s")
    if load_s is not None:
        parts.append(f"model load and first prediction: {load_s:.2f} s")
    before = t["loadgen"].get("rss_before_model_mb")
    if before is not None:
        parts.append(f"its RSS includes the load generator's own, {before:.0f} MB before the "
                     "model was loaded")
    parity = t["parity"]
    if parity is not None:
        parts.append(f"parity checked against {parity['reference']}")
    return "; ".join(parts) + "."


def crosscheck_table(run: RunDoc) -> Table:
    rows = []
    for t in run["targets"]:
        for s in t["stages"]:
            loc = s.get("locust") or {}
            lat = s["latency_ms"]
            rows.append((
                t["name"], str(s["concurrency"]), fmt_rps(s["rps"]), fmt_rps(loc.get("rps")),
                fmt_ms(lat["p50"] if lat else None), fmt_ms(loc.get("p50_ms")),
                fmt_ms(lat["p99"] if lat else None), fmt_ms(loc.get("p99_ms")),
            ))
    return Table(("target", "users", "req/s", "Locust req/s", "p50 ms", "Locust p50",
                  "p99 ms", "Locust p99"), tuple(rows), frozenset(range(1, 8)))


def method_items(run: RunDoc) -> list[str]:
    sc = run["scenario"]
    meta = run["metadata"]
    prices = serverless.prices_line(run)
    return [*([prices] if prices else []),
        f"Scenario `{sc.get('name')}` (sha256 {str(sc.get('sha256'))[:12]}): closed loop at "
        f"{', '.join(str(n) for n in sc.get('concurrency', []))} concurrent users, each sending "
        f"its next request as soon as the last is answered. Per stage: at least "
        f"{sc.get('warmup_s')} s warm-up (discarded; it lasts until every user has had an "
        f"answer, so cold starts fall in it), {sc.get('duration_s')} s measured, "
        f"{sc.get('cooldown_s')} s cool-down under the same load, then a drain.",
        "Latency: from just before the request is sent to the last byte of the answer, "
        "recorded per request by deploybench's own listener at sub-microsecond resolution. "
        "Percentiles are nearest-rank over successful requests sent in the window.",
        "req/s: successful answers to requests sent in the measurement window, divided by "
        "its length.",
        "Closed-loop latency understates what users see when a server stalls (coordinated "
        "omission): a stalled server also stops the load. Read p99 together with the "
        "throughput it was measured at.",
        f"CPU: the target runs on CPUs {fmt_cpus(meta.get('target_cpus'))}, the load "
        f"generator (Locust, its own process) on {fmt_cpus(meta.get('loadgen_cpus'))}. CPU "
        "percentages are of the CPUs each was given; RSS sums the target's processes.",
        f"Requests use the `{meta.get('encoding')}` encoding; every request cycles through "
        f"the bundle's {run['bundle'].get('examples')} example inputs.",
    ]


def machine_table(run: RunDoc) -> Table:
    meta = run["metadata"]
    keys = ("cpu_model", "cpu_count", "memory_gb", "platform", "python", "torch", "locust",
            "flask", "gunicorn", "numpy", "deploybench", "git_commit", "command")
    rows = tuple((k, str(meta.get(k))) for k in keys if k in meta)
    return Table(("", "value"), rows)
