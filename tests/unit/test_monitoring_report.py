"""The report's monitoring sections (issue 22), from run documents built by hand: "What
monitoring costs" (its table's figures and changes, the words naming who pays most and
least, its hedges and chart), "Monitoring: what the targets counted" (the cross-check and
its flags, also among the Warnings), the decision weighing each deployment with
monitoring off, and that older runs render nothing new."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from harness.results import write_run
from reports import (
    document,
    encodings,
    findings,
    markdown,
    monitorcheck,
    monitorcost,
    monitormodes,
)
from reports.blocks import Chart
from reports.charts import render_all
from reports.compare import compare
from reports.decision import decide, figures
from reports.monitorchart import bar_heights
from reports.monitorchart import render_all as render_monitoring
from reports.render import render_run_dir
from reports.schema import RunDoc, StageResult, TargetResult
from reports.stageblocks import TargetMetricsBlock
from tests.unit import runs

PNG = b"\x89PNG\r\n\x1a\n"


def result(deployment: str, mode: str, stages: list[StageResult],
           logged: int | None = None) -> TargetResult:
    name = deployment if mode == "off" else f"{deployment}+{mode}"
    t = runs.target(deployment, stages)
    t["name"] = name
    t["deployment"] = deployment
    t["encoding"] = "json"
    t["batching"] = None
    t["monitoring"] = mode
    t["describe"]["monitoring"] = {
        "mode": mode, "metrics": "metrics" in mode, "log_rate": 1.0 if "log" in mode else 0.0,
        "metrics_url": "http://127.0.0.1:8000/metrics" if "metrics" in mode else None,
        "prediction_log_dir": f"logs/{name}-predictions" if "log" in mode else None}
    if logged is not None:
        t["prediction_log"] = {"dir": f"logs/{name}-predictions", "rows": logged}
    return t


def metrics(sent: int, counted: int, target_mean: float = 0.8,
            client_mean: float = 1.0) -> TargetMetricsBlock:
    diff = (counted - sent) / sent * 100.0
    return {"target_requests": counted, "loadgen_requests": sent,
            "count_diff_percent": diff, "target_errors": 0, "loadgen_errors": 0,
            "target_mean_ms": target_mean, "loadgen_mean_ms": client_mean,
            "target_p99_ms": 2.0, "loadgen_p99_ms": 2.5, "scrapes": 2,
            "agrees": abs(diff) <= 2.0, "why": None if abs(diff) <= 2.0 else "counts differ"}


def with_metrics(stage: StageResult, block: dict[str, Any]) -> StageResult:
    stage["target_metrics"] = block  # type: ignore[typeddict-item]
    return stage


def cost_run() -> RunDoc:
    """flask and grpc off / metrics / metrics+log at 1 and 16 users: metrics cost flask
    10% of its throughput at 16 users and grpc 2%; logging (metrics+log against metrics)
    costs flask 5% more and grpc 20% more."""
    def modes(name: str, rps: float, metrics_loss: float, log_loss: float,
              p50: float) -> list[TargetResult]:
        out = []
        for mode, factor, extra in (("off", 1.0, 0.0), ("metrics", 1 - metrics_loss, 0.05),
                                    ("metrics+log", (1 - metrics_loss) * (1 - log_loss), 0.1)):
            out.append(result(name, mode, [
                runs.stage(1, 500.0, p50 + extra, 2 * (p50 + extra)),
                runs.stage(16, rps * factor, 10.0, 30.0 * (2 - factor))],
                logged=12_345 if "log" in mode else None))
        return out
    return runs.run([*modes("flask", 1000.0, 0.10, 0.05, 1.0),
                     *modes("grpc", 2000.0, 0.02, 0.20, 0.5)])


def markdown_of(run: RunDoc) -> str:
    blocks = document.build(run)
    paths = {b.name: f"charts/{b.name}.png" for b in blocks if isinstance(b, Chart)}
    return markdown.render(blocks, paths)


def section(md: str, heading: str) -> str:
    return md.split(f"## {heading}\n")[1].split("\n## ", maxsplit=1)[0]


# -- what monitoring costs --------------------------------------------------------------

def test_cost_table_holds_each_mode_with_its_change_against_off() -> None:
    md = section(markdown_of(cost_run()), "What monitoring costs")
    assert "### flask" in md
    assert ("| mode | result | peak req/s | capacity req/s | p50 ms, 1 user | p99 ms, 1 user "
            "| req/s, 16 users | p99 ms, 16 users | rows logged |") in md
    assert "| off | flask | 1,000 | 1,000 | 1.00 | 2.00 | 1,000 | 30.0 | - |" in md
    assert ("| metrics | flask+metrics | 900 (-10.0%) | 900 (-10.0%) | 1.05 (+0.050 ms, +5%) "
            "| 2.10 (+0.100 ms, +5%) | 900 (-10.0%) | 33.0 (+3.00 ms, +10%) | - |") in md
    # 1000 x 0.9 x 0.95 = 855; logged rows only for the logging mode.
    assert "| metrics+log | flask+metrics+log | 855 (-14.5%) |" in md
    assert md.count("| 12,345 |") == 2
    assert "](charts/monitoring.png)" in md


def test_words_name_who_pays_most_and_least_from_the_figures() -> None:
    run = cost_run()
    assert monitorcost.ranking(run) == [
        "Metrics cost most on **flask** (metrics against off: throughput -10.0% at 16 "
        "users, p50 +0.050 ms at 1 user) and least on **grpc** (metrics against off: "
        "throughput -2.0% at 16 users, p50 +0.050 ms at 1 user).",
        "Logging cost most on **grpc** (metrics+log against metrics: throughput -20.0% at "
        "16 users, p50 +0.050 ms at 1 user) and least on **flask** (metrics+log against "
        "metrics: throughput -5.0% at 16 users, p50 +0.050 ms at 1 user)."]
    # Swap the figures: the words follow them.
    for t in run["targets"]:
        if t["name"] == "flask+metrics":
            t["stages"][1] = runs.stage(16, 995.0, 10.0, 30.0)
    assert monitorcost.ranking(run)[0].startswith("Metrics cost most on **grpc**")


def test_changes_within_noise_and_invalid_stages_are_hedged() -> None:
    run = cost_run()
    for t in run["targets"]:
        if t["name"] == "grpc+metrics":  # windows spread wide: -2% is within them
            t["stages"][1] = runs.stage(16, 1960.0, 10.0, 30.0,
                                        windows=[(1800.0, 10.0, 30.0), (1960.0, 10.0, 30.0),
                                                 (2100.0, 10.0, 30.0)])
        if t["name"] == "flask+metrics":
            t["stages"][1] = runs.stage(16, 900.0, 10.0, 33.0, valid=False)
    md = section(markdown_of(run), "What monitoring costs")
    assert "| 1,960 (≈-2.0%) |" in md
    assert "| 900 (-10.0%)† |" in md
    [metrics_line, _] = monitorcost.ranking(run)
    assert "**grpc** (metrics against off: throughput -2.0% at 16 users, p50 +0.050 ms at " \
        "1 user; within the run's noise)" in metrics_line
    assert "**flask** (metrics against off: throughput -10.0% at 16 users, p50 +0.050 ms " \
        "at 1 user; from an INVALID stage)" in metrics_line
    # An INVALID stage's figure may be its instability, not the cost: named, not ranked.
    assert metrics_line.startswith("Metrics cost **grpc**")
    assert "; not ranked: **flask**" in metrics_line
    assert "These are one run's figures" in md
    assert "10-15% between runs" in md


def test_one_deployment_is_not_ranked_against_itself() -> None:
    run = cost_run()
    run["targets"] = [t for t in run["targets"] if t["deployment"] == "flask"]
    assert monitorcost.ranking(run)[0].startswith("Metrics cost **flask** (metrics against "
                                                  "off: throughput -10.0%")


def test_the_decision_weighs_each_deployment_with_monitoring_off() -> None:
    run = cost_run()
    d = decide(run)
    assert [f.name for f in d.figures] == ["flask", "grpc"]
    assert d.best is not None
    assert d.best.name == "grpc"
    md = markdown_of(run)
    decision = section(md, "Decision")
    assert "flask+metrics and flask+metrics+log (weighed as flask); grpc+metrics and " \
        "grpc+metrics+log (weighed as grpc) measured the same deployments" in decision
    assert "| flask+metrics |" not in decision
    questions = section(md, "Questions to ask before choosing")
    assert "| flask |" in questions
    assert "| flask+metrics |" not in questions


def test_a_run_in_one_mode_is_decided_as_before() -> None:
    """run --monitoring metrics alone: flask+metrics is the only flask, and a candidate."""
    run = runs.run([result("flask", "metrics", [runs.stage(1, 500.0, 1.0, 2.0)])])
    assert not monitorcost.applies(run)
    d = decide(run)
    assert d.best is not None
    assert d.best.name == "flask+metrics"
    assert d.set_aside == ()
    assert "## What monitoring costs" not in markdown_of(run)


# -- what the targets counted -------------------------------------------------------------

def check_run(counted: int, target_mean: float = 0.8) -> RunDoc:
    t = result("flask", "metrics", [
        with_metrics(runs.stage(1, 500.0, 1.0, 2.0), dict(metrics(1000, 1010))),
        with_metrics(runs.stage(16, 1000.0, 10.0, 30.0),
                     dict(metrics(2000, counted, target_mean=target_mean)))])
    return runs.run([t])


def test_the_crosscheck_tabulates_both_sides() -> None:
    md = section(markdown_of(check_run(2000)), "Monitoring: what the targets counted")
    assert ("| target | load | target counted | load generator sent | difference | errors "
            "(target / load gen.) | target mean ms | client mean ms | target p99 ms | client "
            "p99 ms | in the application | agrees |") in md
    assert ("| flask+metrics | 1 user | 1,010 | 1,000 | +1.0% | 0 / 0 | 0.800 | 1.00 | 2.00 "
            "| 2.50 | 80% | yes |") in md
    assert "All 2 stages agree within 2%." in md
    assert "reading the body, any wait for a model thread or a batch" in md
    assert not any("monitoring" in w for w in findings.warnings(check_run(2000)))


def test_a_count_three_percent_off_is_flagged_and_one_percent_is_not() -> None:
    run = check_run(2060)
    [line] = monitorcheck.findings(run)
    assert line.startswith("flask+metrics at 16 users: monitoring disagrees with the load "
                           "generator: the target counted 2,060 requests against the load "
                           "generator's 2,000 (+3.0%, more than 2% apart).")
    assert line in findings.warnings(run)
    md = markdown_of(run)
    assert line in section(md, "Warnings")
    assert "| flask+metrics | 16 users | 2,060 | 2,000 | +3.0% |" in md
    assert "1 of 2 stages agree; these do not (also under Warnings):" in md
    # 1,010 of 1,000 (the 1-user stage) is within 2%: not flagged.
    assert "at 1 user" not in line
    assert not monitorcheck.findings(check_run(1980))


def test_a_target_slower_than_its_client_or_a_failed_scrape_is_flagged() -> None:
    [slow] = monitorcheck.findings(check_run(2000, target_mean=1.05))
    assert "the target's mean time 1.05 ms is above the client's mean latency 1.00 ms (+5%)" \
        in slow
    assert not monitorcheck.findings(check_run(2000, target_mean=1.01))
    run = check_run(2000)
    run["targets"][0]["stages"][0]["target_metrics"] = {"error": "connection refused"}
    [failed] = monitorcheck.findings(run)
    assert failed.startswith("flask+metrics at 1 user: monitoring disagrees with the load "
                             "generator: the scrape failed (connection refused)")
    assert "http://127.0.0.1:8000/metrics" in failed
    assert "| flask+metrics | 1 user | - | - |" in markdown_of(run)


def test_with_failures_the_means_are_left_to_the_harnesss_check_of_the_totals() -> None:
    # 30 of 100 Lambda requests throttled in 1 ms: the client's mean (4.5 ms) falls below
    # the invocations' (5 ms) though each fits in its round trip; the harness's check of
    # the totals agreed, and the report does not flag the means.
    run = check_run(2000, target_mean=5.0)
    block = run["targets"][0]["stages"][1]["target_metrics"]  # type: ignore[typeddict-item]
    block.update(loadgen_mean_ms=4.5, loadgen_errors=30, target_errors=30)
    assert not monitorcheck.findings(run)
    block.update(agrees=False, why="the target's time in all exceeds the client's")
    [line] = monitorcheck.findings(run)
    assert "the target's time in all exceeds the client's" in line


def test_lambda_time_is_said_to_be_reports_duration() -> None:
    run = check_run(2000)
    run["targets"][0]["deployment"] = "lambda"
    assert "REPORT's Duration" in monitorcheck.covers(run)
    assert "REPORT's Duration" not in monitorcheck.covers(check_run(2000))


# -- older runs, and both formats ---------------------------------------------------------

def test_an_older_run_renders_nothing_new() -> None:
    plain = runs.target("flask", [runs.stage(1, 500.0, 1.0, 2.0)])
    other = runs.target("grpc", [runs.stage(1, 500.0, 1.0, 2.0)])
    run = runs.run([plain, other])
    md = markdown_of(run)
    assert "monitoring" not in md.lower()
    assert not monitorcheck.applies(run)
    assert not monitorcost.applies(run)
    assert render_monitoring(run) == {}
    assert "monitoring" not in render_all(run)
    assert decide(run).set_aside == ()


def test_rendered_files_have_both_sections_and_the_chart(tmp_path: Path) -> None:
    run = cost_run()
    run["targets"][1]["stages"][0]["target_metrics"] = dict(metrics(1000, 1030))  # type: ignore[typeddict-item]
    write_run(tmp_path, run)
    rendered = render_run_dir(tmp_path, run)
    assert (tmp_path / "charts" / "monitoring.png").read_bytes().startswith(PNG)
    md = rendered.markdown.read_text()
    html = rendered.html.read_text()
    for heading in ("What monitoring costs", "Monitoring: what the targets counted"):
        assert f"## {heading}" in md
        assert f"<h2>{heading}</h2>" in html
    assert "+3.0%, more than 2% apart" in html


def test_peaks_are_not_compared_across_deployments_and_modes() -> None:
    summary = section(markdown_of(cost_run()), "Summary of measurements")
    assert "grpc reached 2.00x the peak throughput of flask:" in summary
    assert "peak throughput of flask+metrics" not in summary
    assert "peak throughput of grpc+metrics" not in summary
    assert "- **flask+metrics**: peak 900 req/s" in summary  # still measured and listed


def test_lambda_sizes_are_grouped_apart_and_a_failed_off_is_said() -> None:
    stages = [runs.stage(1, 500.0, 1.0, 2.0)]
    results = [result(f"lambda-{mb}", m, stages) for mb in (512, 1769)
               for m in ("off", "metrics")]
    for t in results:
        t["deployment"] = "lambda"
    run = runs.run(results)
    assert [g.label for g in monitormodes.groups(run)] == ["lambda-512", "lambda-1769"]
    assert [f.name for f in decide(run).figures] == ["lambda-512", "lambda-1769"]
    results[0]["status"] = "failed"
    results[0]["stages"] = []
    results.append(result("lambda-512", "metrics+log", stages))
    results[-1]["deployment"] = "lambda"
    md = section(markdown_of(runs.run(results)), "What monitoring costs")
    assert ("Not measured (failed): lambda-512; the changes above are against "
            "lambda-512+metrics.") in md


def test_compare_does_not_take_a_monitored_result_for_a_renamed_one() -> None:
    plain = runs.run([result("flask", "off", [runs.stage(4, 1000.0, 4.0, 9.0)])])
    watched = runs.run([result("flask", "metrics", [runs.stage(4, 990.0, 4.0, 9.0)])])
    notes = compare(plain, watched).notes
    assert "flask+metrics: only in B" in notes
    assert not any("same deployment and encoding" in n for n in notes)


def test_encodings_compare_results_of_one_monitoring_mode() -> None:
    stages = [runs.stage(4, 1000.0, 4.0, 9.0)]
    run = runs.run([result("flask-json", m, stages) for m in ("off", "metrics")]
                   + [result("flask-binary", m, stages) for m in ("off", "metrics")])
    for t in run["targets"]:
        t["deployment"] = "flask"
        t["encoding"] = t["name"].split("+")[0].removeprefix("flask-")
    assert [(p.subject, p.base["name"], p.other["name"]) for p in encodings.pairs(run)] == [
        ("flask", "flask-json", "flask-binary"),
        ("flask+metrics", "flask-json+metrics", "flask-binary+metrics")]


def test_the_chart_draws_no_bar_for_a_mode_a_deployment_did_not_run() -> None:
    run = cost_run()
    run["targets"] = [t for t in run["targets"] if t["name"] != "grpc+metrics+log"]
    figs = {f.name: f for f in figures(run)}
    per_group = [{r.mode: r for r in monitorcost.rows(g, figs)}
                 for g in monitormodes.groups(run)]
    heights = bar_heights(per_group, "metrics+log", lambda r: r.heavy_rps)
    assert heights[0] == pytest.approx(-14.5)  # flask: 1000 -> 855
    assert math.isnan(heights[1])  # grpc ran no metrics+log: no bar, not a 0% one
    assert bar_heights(per_group, "metrics", lambda r: r.heavy_rps) == \
        pytest.approx([-10.0, -2.0])
