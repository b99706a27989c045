"""A report as a list of format-neutral blocks, built from ``run.json`` alone.

Each exporter (Markdown, HTML, console) renders the same blocks, so the formats cannot
drift apart: one place decides what a report says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports import (
    batching,
    breakdown,
    decision,
    encodings,
    findings,
    loads,
    monitoring,
    power,
    questions,
    serverless,
    summary,
    timeline,
    trials,
)
from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table
from reports.format import fmt_cpus, fmt_ms, fmt_num, fmt_rps, stage_load
from reports.objective import latency_bounds
from reports.runblocks import ScenarioBlock
from reports.schema import RunDoc, StageResult, TargetResult, simulated_targets
from reports.stagetables import has_trials, open_loop_table, stage_table


def closed_stages(target: TargetResult) -> list[StageResult]:
    return [s for s in target["stages"] if s.get("mode", "closed") == "closed"]


def _measured_closed(target: TargetResult) -> list[StageResult]:
    """Closed-loop stages with answers (open-loop ones if there are none); the VALID ones
    when there are any."""
    stages = ([s for s in closed_stages(target) if s["latency_ms"] is not None]
              or [s for s in target["stages"] if s["latency_ms"] is not None
                  and s.get("mode") != "timeline"])
    valid = [s for s in stages if s.get("valid", True)]
    return valid or stages


def peak_stage(target: TargetResult) -> StageResult | None:
    stages = _measured_closed(target)
    return max(stages, key=lambda s: s["rps"]) if stages else None


def lowest_latency_stage(target: TargetResult) -> StageResult | None:
    """The lowest median of any closed-loop stage, VALID or not (the caller marks it): a
    stage unstable on throughput still shows where latency bottoms out."""
    stages = [s for s in closed_stages(target) if s["latency_ms"] is not None] \
        or _measured_closed(target)
    return min(stages, key=lambda s: s["latency_ms"]["p50"]) if stages else None  # type: ignore[index]


def within_slo_stage(target: TargetResult, slo_p99_ms: float) -> StageResult | None:
    """The VALID closed-loop stage with the highest throughput whose p99 met the SLO."""
    stages = [s for s in closed_stages(target) if s.get("valid", True)
              and s["latency_ms"] is not None and s["latency_ms"]["p99"] <= slo_p99_ms]
    return max(stages, key=lambda s: s["rps"]) if stages else None


def _invalid_note(stage: StageResult) -> str:
    return "" if stage.get("valid", True) else " [INVALID: " + "; ".join(stage["reasons"]) + "]"


def validity_items(run: RunDoc) -> list[str]:
    """One line per INVALID stage, with its reasons."""
    items = []
    for t in run["targets"]:
        trials = has_trials(t)
        for s in t["stages"]:
            if s.get("valid", True):
                continue
            where = stage_load(s) + (f", trial {s.get('trial', 0) + 1}" if trials else "")
            items.append(f"**{t['name']}** at {where}: " + "; ".join(s["reasons"]))
    return items


def validity_counts(run: RunDoc) -> tuple[int, int]:
    stages = [s for t in run["targets"] for s in t["stages"]]
    return sum(1 for s in stages if s.get("valid", True)), len(stages)


def summary_items(run: RunDoc) -> list[str]:
    aside = monitoring.set_aside(run)  # other monitoring modes: compared in their section
    measured = [t for t in run["targets"] if t["status"] == "ok" and peak_stage(t)
                and t["name"] not in aside]
    items = [line for t in run["targets"] if (line := _target_summary(run, t)) is not None]
    items += _sweep_stops(run)
    items += timeline.summary_lines(run)
    items += _peak_comparisons(run, measured)
    items += _parity_summary(run)
    return items


def _target_summary(run: RunDoc, t: TargetResult) -> str | None:
    """A target's line: its peak and its lowest median latency, what the objective allows,
    its cold start and redeploy; or why it has none (None: its timeline's line says it)."""
    if t["status"] != "ok":
        return f"**{t['name']}** failed: {t['error'] or 'unknown error'}"
    peak = peak_stage(t)
    low = lowest_latency_stage(t)
    cold_text = _startup_text(t)
    if peak is None or low is None:
        if cold_text or not timeline.stages(t):  # a timeline has its own line below
            return f"**{t['name']}**: {cold_text or 'no successful requests'}"
        return None
    assert peak["latency_ms"] is not None
    assert low["latency_ms"] is not None
    return (
        f"**{t['name']}**: peak {fmt_rps(peak['rps'])} req/s at {stage_load(peak)}"
        f" (p99 {fmt_ms(peak['latency_ms']['p99'])} ms){_invalid_note(peak)}; lowest "
        f"median latency {fmt_ms(low['latency_ms']['p50'])} ms at {stage_load(low)}"
        + ("" if low.get("valid", True) else " (an INVALID stage)")
        + _slo_text(t, run["metadata"].get("slo_p99_ms"))
        + (f"; {cold_text}" if cold_text else "")
    )


def _startup_text(t: TargetResult) -> str:
    """The median cold start and redeploy, those measured ("" for neither)."""
    cold: Mapping[str, Any] = t.get("cold_starts") or {}
    cold_ms = (cold.get("total_ms") or {}).get("p50")
    cold_text = f"cold start p50 {fmt_ms(cold_ms)} ms" if cold_ms is not None else ""
    redeploy_ms, _, _ = serverless.redeploy_p50_ms(t)
    if redeploy_ms is not None:
        cold_text += ("; " if cold_text else "") + f"redeploy p50 {fmt_ms(redeploy_ms)} ms"
    return cold_text


def _slo_text(t: TargetResult, slo: float | None) -> str:
    """The highest throughput within the run's p99 objective ("" without one)."""
    if slo is None:
        return ""
    fit = within_slo_stage(t, slo)
    return (f"; highest throughput within p99 <= {slo:g} ms: "
            f"{fmt_rps(fit['rps'])} req/s at {stage_load(fit)}" if fit else
            f"; no VALID stage met p99 <= {slo:g} ms")


def _sweep_stops(run: RunDoc) -> list[str]:
    """Where each sweep stopped, and why."""
    meta = run["metadata"]
    default_slo = latency_bounds(meta.get("slo"), meta.get("slo_p99_ms"))[1]
    items = []
    for t in run["targets"]:
        for s in t["stages"]:
            if s.get("sweep_stop"):
                trial = f" (trial {s.get('trial', 0) + 1})" if has_trials(t) else ""
                why = str(s["sweep_stop"])
                if default_slo and "passed the SLO" in why:
                    why += " (the default objective; --slo sets another)"
                items.append(f"**{t['name']}** sweep stopped after {stage_load(s)}{trial}: "
                             f"{why}")
    return items


def _peak_comparisons(run: RunDoc, measured: list[TargetResult]) -> list[str]:
    """The best peak against each other measured target's (over trials where run)."""
    if len(measured) >= 2 and trials.has_trials(run):
        return trials.comparisons(run)
    items: list[str] = []
    if len(measured) >= 2:
        ranked = sorted(measured, key=lambda t: peak_stage(t)["rps"], reverse=True)  # type: ignore[index]
        best = ranked[0]
        best_rps = peak_stage(best)["rps"]  # type: ignore[index]
        for other in ranked[1:]:
            other_rps = peak_stage(other)["rps"]  # type: ignore[index]
            if other_rps > 0:
                items.append(
                    f"{best['name']} reached {best_rps / other_rps:.2f}x the peak throughput "
                    f"of {other['name']}: {_peak_verdict(best, other)}"
                )
    return items


def _parity_summary(run: RunDoc) -> list[str]:
    """The targets whose predictions matched the in-process ones, if any was checked."""
    parity = [t for t in run["targets"] if t["parity"]]
    if not parity:
        return []
    worst = max(t["parity"]["max_abs_diff"] for t in parity)  # type: ignore[index]
    n = parity[0]["parity"]["examples"]  # type: ignore[index]
    names = ", ".join(t["name"] for t in parity)
    return [f"Parity: {names} returned the in-process predictions on all {n} examples "
            f"(same class; probabilities within {worst:.1e})"]


def _peak_verdict(best: TargetResult, other: TargetResult) -> str:
    """Whether two peaks differ, by the rule the decision's ties use: Welch's t-test over
    trials; one run gives the windows' spread and no verdict."""
    a, b = peak_stage(best), peak_stage(other)
    assert a is not None  # both measured
    assert b is not None
    verdict = encodings.judge(loads.same_level(best["stages"], a),
                              loads.same_level(other["stages"], b), "rps")
    if verdict.differs is None:  # one run
        return f"one run: {verdict.windows(best['name'], other['name'])}{verdict.how}"
    return (f"they differ ({verdict.how})" if verdict.differs else
            f"a tie: the difference is not significant ({verdict.how})")


UNFINISHED = {
    "partial": "it stopped early",
    "running": "its orchestrator ended without finishing (killed, or a second Ctrl-C): "
               "run.json holds what was written after the last target it finished",
}


def _unfinished(run: RunDoc) -> list[Block]:
    if run["status"] == "complete":
        return []
    why = run.get("stopped_by") or UNFINISHED.get(run["status"], f"status {run['status']!r}")
    requested = run["metadata"].get("results_planned") \
        or run["metadata"].get("targets_requested") or []
    missing = [t for t in requested if t not in {r["name"] for r in run["targets"]}]
    text = f"**This run did not finish** ({run['status']}): {why}."
    if missing:
        text += f" Not measured: {', '.join(missing)}."
    return [Paragraph(text)]


def build(run: RunDoc) -> list[Block]:
    """The report, section by section."""
    choice = decision.decide(run)
    return [
        *_title(run),
        Heading("Decision"),
        *summary.summary_blocks(run, choice),
        *_invalid_stages(run), *_warnings(run),
        Heading("Caveats"), Bullets(tuple(questions.caveats(run, choice))),
        Heading("Questions to ask before choosing"),
        questions.questions_table(run, choice),
        *_charts(run),
        Heading("Summary of measurements"),
        Bullets(tuple(summary_items(run))),
        *encodings.blocks(run),
        *batching.blocks(run), *monitoring.blocks(run),
        *power.blocks(run), *timeline.section(run),
        *_trials(run),
        Heading("Results per target"),
        *(block for t in run["targets"] for block in _target_results(t)),
        *_cold_starts(run),
        *_redeploys(run),
        *_method(run),
    ]


def _title(run: RunDoc) -> list[Block]:
    """The heading, any simulated targets, where and when it ran, and if it finished."""
    meta = run["metadata"]
    valid, total = validity_counts(run)
    fake = simulated_targets(run)
    return [
        Heading(f"{'SIMULATED: ' if fake else ''}deploybench report: "
                f"{run['bundle'].get('name')} bundle, {run['scenario'].get('name')} scenario",
                1),
        *([Paragraph(f"**Simulated figures, not a measurement**: {', '.join(fake)} "
                     f"{'is a test target' if len(fake) == 1 else 'are test targets'} "
                     "(`--targets fake`): a fixed service time under a simulated load, with "
                     "no model and no server. Every figure, chart and decision below about "
                     f"{'it' if len(fake) == 1 else 'them'} exercises deploybench's "
                     "statistics and report, and says nothing about a deployment.")]
          if fake else []),
        Paragraph(f"Run {run['status']} at {meta.get('started_at')} on {meta.get('hostname')}: "
                  f"{meta.get('cpu_model')}; CPUs {fmt_cpus(meta.get('target_cpus'))} for the "
                  f"target, CPUs {fmt_cpus(meta.get('loadgen_cpus'))} for the load generator. "
                  f"{valid} of {total} stages VALID."),
        *_unfinished(run),
    ]


def _invalid_stages(run: RunDoc) -> list[Block]:
    invalid = validity_items(run)
    if not invalid:
        return []
    return [Heading("INVALID stages"),
            Paragraph("These stages' figures are shown but must not be relied on "
                      "(the rules are under 'How these numbers were measured'):"),
            Bullets(tuple(invalid))]


def _warnings(run: RunDoc) -> list[Block]:
    warnings = findings.warnings(run)
    return [Heading("Warnings"), Bullets(tuple(warnings))] if warnings else []


def _charts(run: RunDoc) -> list[Block]:
    """The charts, with the latency breakdown's table after its chart."""
    split = breakdown.table(run)
    return [
        Heading("Charts"),
        Chart("throughput", "Throughput vs concurrency",
              "Requests per second at each number of concurrent users, one line per target"),
        Chart("latency", "p99 latency vs throughput, with the objective",
              "p99 latency against achieved requests per second, one line per target "
              "(closed loop), square markers for its open-loop rates, and the p99 "
              "objective as a dashed line"),
        Chart("cdf", "Latency distribution at the common load",
              "Cumulative distribution of latency at the load every target ran, one line "
              "per target, on a percentile scale that stretches the tail"),
        Chart("breakdown", "Where the time goes per request, vs in-process",
              "Stacked bars per target: model, encoding, transport and server, queueing"),
        *([split] if split is not None else []),
        Chart("cold_start", "Cold start per target",
              "Bars: median seconds from launch to first good answer per target"),
        Chart("memory", "Memory per target",
              "Bars: peak resident memory of one instance per target, in MB"),
        Chart("cost", "Cost per month vs monthly requests",
              "Monthly cost against monthly requests per target, log scales, with the "
              "break-even points of pay-per-request against always-on marked"),
    ]


def _trials(run: RunDoc) -> list[Block]:
    if not trials.has_trials(run):
        return []
    return [Heading("Trials"), Paragraph(trials.describe_method()),
            Table(trials.TRIAL_HEADERS, tuple(trials.summary_rows(run)),
                  frozenset(range(2, 7)))]


def _target_results(t: TargetResult) -> list[Block]:
    """A target's stage tables and how it was deployed; or why it failed."""
    blocks: list[Block] = [Heading(t["name"], 3)]
    if t["status"] != "ok":
        return [*blocks, Paragraph(f"Failed: {t['error']}")]
    blocks.append(stage_table(t))
    open_table = open_loop_table(t)
    if open_table is not None:
        blocks.append(open_table)
    platform = serverless.platform_table(t)
    if platform is not None:
        blocks.append(platform)
    blocks.append(Paragraph(describe_line(t)))
    return blocks


def _cold_starts(run: RunDoc) -> list[Block]:
    cold = serverless.cold_start_table(run)
    if cold is None:
        return []
    realism = serverless.lambda_cold_start_text(run)
    return [Heading("Cold starts"), cold,
            *([Paragraph(realism)] if realism is not None else [])]


def _redeploys(run: RunDoc) -> list[Block]:
    redeploys = serverless.redeploy_table(run)
    return [Heading("Redeploys"), redeploys] if redeploys is not None else []


def _method(run: RunDoc) -> list[Block]:
    """Locust's figures beside deploybench's, how the figures were measured, and on what."""
    return [
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


def describe_line(t: TargetResult) -> str:
    d: Mapping[str, Any] = t["describe"]  # read key by key below
    parts = [f"runtime: {d.get('runtime')}", f"server: {d.get('server')}",
             f"CPUs {fmt_cpus(d.get('cpus'))}"]
    for key, label in (("workers", "workers"), ("threads_per_worker", "threads/worker"),
                       ("torch_threads_per_worker", "torch threads/worker"),
                       ("encoding", "encoding")):
        if d.get(key) is not None:
            parts.append(f"{label}: {d[key]}")
    if d.get("image"):  # --runtime docker: what ran, and under which limits
        parts.append(f"image {d['image']} ({d.get('image_id') or '?'}, "
                     f"{fmt_num(d.get('image_size_mb'), 0)} MB, built "
                     f"{str(d.get('image_created') or '?')[:19]})")
        memory = d.get("memory_limit_mb")
        parts.append(f"container limits ({d.get('limits_from') or d.get('limits') or '?'}): "
                     f"cpuset {fmt_cpus(d.get('cpuset'))}, memory "
                     f"{f'{memory:,} MB' if memory else 'unlimited'}, network "
                     f"{d.get('network') or '?'}")
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
                t["name"], stage_load(s), fmt_rps(s["rps"]), fmt_rps(loc.get("rps")),
                fmt_ms(lat["p50"] if lat else None), fmt_ms(loc.get("p50_ms")),
                fmt_ms(lat["p99"] if lat else None), fmt_ms(loc.get("p99_ms")),
            ))
    return Table(("target", "load", "req/s", "Locust req/s", "p50 ms", "Locust p50",
                  "p99 ms", "Locust p99"), tuple(rows), frozenset(range(1, 8)))


def method_items(run: RunDoc) -> list[str]:
    sc = run["scenario"]
    meta = run["metadata"]
    prices = serverless.prices_line(run)
    return [*([prices] if prices else []), serverless.always_on_prices_line(run),
        f"Scenario `{sc.get('name')}` (sha256 {str(sc.get('sha256'))[:12]}): "
        f"{_stage_plan(sc)}. Per stage: at least {sc.get('warmup_s')} s warm-up (discarded; "
        f"it lasts until every user has had an answer, so cold starts fall in it), then "
        f"{sc.get('window_s')} s measurement windows until the last "
        f"{sc.get('stability_windows')} agree within {sc.get('stability_tolerance', 0):.0%} "
        f"on throughput and p50 (p50 only in open loop, where the schedule sets the "
        f"throughput; at most {sc.get('max_windows')}; only those are reported), "
        f"{sc.get('cooldown_s')} s cool-down under the same load, then a drain.",
        "Verdicts (VALID/INVALID per stage): INVALID when the kept windows did not agree "
        "(perf_analyzer's stability rule); when the stage holds fewer successful requests "
        "than p99 needs (MLPerf LoadGen's early-stopping minimum at 99% confidence: 662; "
        "p99.9 is shown only from 6,636); when the load generator used more than 90% of "
        "its core; when more than 1% of open-loop requests went out more than the "
        "tolerance late, or waited for a free in-flight slot, or any arrival due in the "
        "window was never sent; when the error rate passed "
        f"the scenario's bound ({sc.get('max_error_rate', 0.01):.1%}); or when the warm-up "
        "did not complete.",
        "Latency: from just before the request is sent to the last byte of the answer, "
        "recorded per request by deploybench's own listener at sub-microsecond resolution. "
        "Percentiles are nearest-rank over successful requests sent in the window.",
        "req/s: successful answers to requests sent in the measurement window, divided by "
        "its length.",
        "Closed-loop latency understates what users see when a server stalls (coordinated "
        "omission): a stalled server also stops the load. Open-loop stages do not: their "
        "latency counts from when each request was due. Read closed-loop p99 together with "
        "the throughput it was measured at.",
        f"CPU: the target runs on CPUs {fmt_cpus(meta.get('target_cpus'))}, the load "
        f"generator (Locust, its own process) on {fmt_cpus(meta.get('loadgen_cpus'))}. CPU "
        "percentages are of the CPUs each was given; RSS sums the target's processes.",
        f"Requests use {encodings.requests_text(meta)}; every request cycles through "
        f"the bundle's {run['bundle'].get('examples')} example inputs.",
    ]


def _stage_plan(sc: ScenarioBlock) -> str:
    parts = []
    levels = sc.get("concurrency") or []
    if levels:
        parts.append("closed loop at " + ", ".join(str(n) for n in levels)
                     + " concurrent users (each sends its next request as soon as the last "
                       "is answered)")
    sweep = sc.get("sweep")
    if isinstance(sweep, dict):
        parts.append(f"a closed-loop sweep from {sweep.get('start')} users, x{sweep.get('factor')}"
                     f" per step up to {sweep.get('max')}, stopped when the best of the last "
                     f"{sweep.get('patience')} steps gained under {sweep.get('min_gain', 0):.0%}"
                     " or p99 passed the SLO (Model Analyzer's rule)")
    rates = sc.get("rate") or []
    fractions = sc.get("rate_fractions") or []
    if rates or fractions:
        offered = ", ".join([f"{r:g}/s" for r in rates]
                            + [f"{f:.0%} of capacity" for f in fractions])
        parts.append(f"open loop ({sc.get('arrival')} arrivals) at {offered}, each request's "
                     f"latency from its intended send time, at most {sc.get('max_inflight')} "
                     f"in flight, 'late' past {sc.get('late_tolerance_ms')} ms")
    segments: list[dict[str, object]] = sc.get("timeline") or []  # type: ignore[assignment]
    if segments:
        steps = ", ".join(f"{s['users']} users for {s['seconds']:g} s"
                          + (f" ({s['label']})" if s.get("label") else "")
                          for s in segments)
        parts.append(f"a timeline of {steps}, back to back in one run, sampled every "
                     f"{sc.get('sample_s')} s (no measurement windows and no stability rule: "
                     "see Timeline)")
    return "; then ".join(parts) or "no load stages"


def machine_table(run: RunDoc) -> Table:
    meta = run["metadata"]
    keys = ("cpu_model", "cpu_count", "memory_gb", "platform", "python", "torch", "locust",
            "flask", "gunicorn", "fastapi", "uvicorn", "numpy", "deploybench", "git_commit",
            "command")
    rows = tuple((k, str(meta.get(k))) for k in keys if k in meta)
    return Table(("", "value"), rows)
