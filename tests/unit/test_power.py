"""Lambda power tuning: ``run --lambda-memory-mb`` with several sizes (one result
``lambda-MB`` each), the ``power`` scenario's keys, windows that stretch until they hold
p99's requests, and the report's "Lambda power tuning" section and chart."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.cpus import CpuPlan
from harness.encodings import measurements
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.options import parse_memory_sizes
from harness.runner import Runner, RunPlan, make_target
from reports import encodings, power
from reports.decision import decide, figures
from reports.markdown import render
from reports.render import render_run_dir
from reports.schema import TargetResult, deployment
from reports.summary import summary_blocks
from scenarios import catalogue
from scenarios.catalogue import ScenarioError
from targets.fake import FakeTarget
from tests.unit.runs import lambda_platform, run, stage, target

# -- result names -------------------------------------------------------------------------


def test_several_sizes_name_one_lambda_result_each() -> None:
    planned = measurements(("inprocess", "lambda", "flask"), {}, ("json",), None, (512, 1769))
    assert [m.name for m in planned] == ["inprocess", "lambda-512", "lambda-1769", "flask"]
    assert [m.memory_mb for m in planned] == [None, 512, 1769, None]
    assert {m.deployment for m in planned if m.memory_mb} == {"lambda"}


def test_sizes_and_encodings_name_lambda_mb_encoding() -> None:
    planned = measurements(("lambda",), {}, ("json", "binary"), None, (512, 1024))
    assert [(m.name, m.memory_mb, m.wire) for m in planned] == [
        ("lambda-512-json", 512, "json"), ("lambda-512-binary", 512, "binary"),
        ("lambda-1024-json", 1024, "json"), ("lambda-1024-binary", 1024, "binary")]


def test_one_size_keeps_the_plain_name_and_endpoints_are_not_sized() -> None:
    assert [m.name for m in measurements(("lambda",), {}, ("json",), None, (512,))] \
        == ["lambda"]
    endpoints = {"fn": "lambda://us-east-1/fn"}
    planned = measurements(("lambda", "fn"), endpoints, ("json",), None, (512, 1769))
    assert [m.name for m in planned] == ["lambda-512", "lambda-1769", "fn"]
    assert planned[-1].memory_mb is None


def test_each_size_builds_its_emulator_at_that_size(tmp_path: Path) -> None:
    plan = RunPlan(targets=("lambda",), bundle="digits", scenario=catalogue.load("power"),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path,
                   lambda_memory_mb=None, lambda_memory_sizes=(512, 1769))
    small = make_target("lambda-512", plan, "json", tmp_path)
    big = make_target("lambda-1769", plan, "json", tmp_path)
    assert (small.memory_mb, big.memory_mb) == (512, 1769)  # type: ignore[attr-defined]
    assert small.log_path != big.log_path  # type: ignore[attr-defined]
    # The plan itself is not changed by building a size.
    assert plan.lambda_memory_mb is None


def test_sandbox_and_freeze_options_reach_each_size(tmp_path: Path) -> None:
    plan = RunPlan(targets=("lambda",), bundle="digits", scenario=catalogue.load("power"),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path,
                   lambda_memory_sizes=(512, 1769), lambda_sandbox="off", lambda_freeze=False)
    built = make_target("lambda-512", plan, "json", tmp_path)
    arguments = built.server_arguments()  # type: ignore[attr-defined]
    assert arguments[arguments.index("--sandbox") + 1] == "off"
    assert "--no-freeze" in arguments
    assert "--freeze" not in arguments
    default = make_target("lambda-512", dataclasses.replace(
        plan, lambda_sandbox=None, lambda_freeze=None), "json", tmp_path)
    arguments = default.server_arguments()  # type: ignore[attr-defined]
    assert arguments[arguments.index("--sandbox") + 1] == "auto"
    assert "--freeze" in arguments


# -- the option ---------------------------------------------------------------------------


def test_memory_sizes_parse_and_refuse_what_lambda_does_not_allow() -> None:
    assert parse_memory_sizes("256, 512,1769") == (256, 512, 1769)
    assert parse_memory_sizes("1769") == (1769,)
    for bad, said in (("100", "128 to 10240"), ("512,20000", "128 to 10240"),
                      ("512,512", "twice"), ("5l2", "whole number"), ("", "whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=said):
            parse_memory_sizes(bad)


def test_bad_memory_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--targets", "lambda", "--lambda-memory-mb", "64,512"])
    assert exc.value.code == 2
    assert "128 to 10240 MB (got 64)" in capsys.readouterr().err


def test_several_sizes_without_the_emulator_are_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "--targets", "fake", "--lambda-memory-mb", "512,1024",
                 "--scenario", "smoke", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "Add lambda to --targets" in err
    assert not (tmp_path / "x").exists()


def test_power_says_which_sizes_it_measures(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    # A bundle that does not exist stops the run after the options are checked, before
    # anything starts.
    assert main(["run", "--targets", "lambda", "--scenario", "power", "--bundle", "nope",
                 "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "scenario power: lambda measured at 512, 1024, 1769, 3008 MB" in err
    assert main(["run", "--targets", "lambda", "--scenario", "power", "--bundle", "nope",
                 "--lambda-memory-mb", "256,512", "--endpoint", "fn=lambda://us-east-1/fn",
                 "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "measured at" not in err
    assert "fn is measured once, at its own memory size" in err


def test_a_result_name_taken_by_an_endpoint_is_refused(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    assert main(["run", "--targets", "lambda", "--lambda-memory-mb", "512,1024",
                 "--endpoint", "lambda-512=http://127.0.0.1:9", "--scenario", "smoke",
                 "--out", str(tmp_path / "x")]) == 1
    assert "two results would be named 'lambda-512'" in capsys.readouterr().err


# -- the scenario -------------------------------------------------------------------------


def test_power_scenario_lists_sizes_and_stretches_windows() -> None:
    sc = catalogue.load("power")
    assert sc.lambda_memory_mb == (512, 1024, 1769, 3008)
    assert sc.concurrency == (1,)
    assert sc.cold_starts >= 3
    assert sc.redeploys == 0
    assert sc.window_max_s is not None
    assert sc.window_max_s > sc.window_s
    assert sc.longest_window_s == sc.window_max_s
    assert sc.to_json()["lambda_memory_mb"] == [512, 1024, 1769, 3008]
    assert catalogue.load("quick").longest_window_s == catalogue.load("quick").window_s


@pytest.mark.parametrize(("extra", "said"), [
    ({"lambda_memory_mb": [100]}, "lambda_memory_mb"),
    ({"lambda_memory_mb": [512, 512]}, "twice"),
    ({"lambda_memory_mb": "512"}, "lambda_memory_mb"),
    ({"window_max_s": 1.0}, re.escape("'window_max_s' (1) must be >= 'window_s' (3)")),
    ({"window_max_s": -1}, "window_max_s"),
])
def test_bad_power_keys_are_refused(tmp_path: Path, extra: dict[str, Any], said: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"concurrency": [1], "warmup_s": 1, "window_s": 3,
                                    **extra}))
    with pytest.raises(ScenarioError, match=said):
        catalogue.load(str(path))


def _slow_run(tmp_path: Path, window_max_s: float | None) -> dict[str, Any]:
    """The fake target at 100 ms a request (10 req/s), 1 user, 3 s windows."""
    doc: dict[str, Any] = {"concurrency": [1], "warmup_s": 1, "window_s": 3,
                           "stability_windows": 3, "max_windows": 4}
    if window_max_s is not None:
        doc["window_max_s"] = window_max_s
    path = tmp_path / f"slow-{window_max_s}.yaml"
    path.write_text(yaml.safe_dump(doc))
    plan = RunPlan(targets=("fake",), bundle="digits", scenario=catalogue.load(str(path)),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path / str(window_max_s))

    def factory(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> FakeTarget:
        return FakeTarget(plan.bundle, name=name, service_time_s=0.1, capacity=1)

    doc_run = Runner(plan, SimulatedLoadGenerator(), target_factory=factory).run()
    return dict(doc_run["targets"][0]["stages"][0])


def test_a_window_stretches_until_it_holds_p99s_requests(tmp_path: Path) -> None:
    fixed = _slow_run(tmp_path, None)
    assert not fixed["valid"]
    assert any("too few requests" in r for r in fixed["reasons"])
    stretched = _slow_run(tmp_path, 60.0)
    assert stretched["valid"], stretched["reasons"]
    assert stretched["requests"] >= 662
    # 221 requests a window at 10 req/s: ~22 s each, not the 60 s cap.
    assert 20 < stretched["duration_s"] / 3 < 30


def test_a_stretched_window_stops_at_its_cap(tmp_path: Path) -> None:
    capped = _slow_run(tmp_path, 10.0)
    assert capped["duration_s"] <= 3 * 10.0 + 1e-6
    assert not capped["valid"]


# -- the report section -------------------------------------------------------------------


def lam(mb: int, p50: float, cost: float, *, enforced: bool | None = True,
        valid: bool = True, errors: int = 0, effective: float | None = None,
        status: str = "ok", users: int = 1) -> TargetResult:
    """An emulated Lambda result at ``mb`` MB: warm duration p50 (p99 twice it) and cost
    per million on x86_64; ``enforced`` None: no sandbox description (an older run)."""
    platform = lambda_platform(cost)
    platform.update(memory_mb=mb, max_memory_used_mb=230.0,
                    duration_warm_ms={"p50": p50, "p99": 2 * p50})
    t: dict[str, Any] = dict(target(f"lambda-{mb}", [stage(users, 1000 / p50, p50 + 1,
                                                           2 * p50 + 1, valid=valid,
                                                           errors=errors,
                                                           platform=platform)],
                                    status=status, error=None if status == "ok" else "boom"))
    t["deployment"] = "lambda"
    t["describe"] = {**t["describe"], "memory_mb": mb}
    if enforced is not None:
        share = min(mb / 1769, 6.0)
        t["describe"]["sandbox"] = {
            "memory_mb": mb, "cpu_share": share,
            "cpu_share_effective": share if effective is None else effective,
            "cpu": "cgroup-v2", "memory": "cgroup-v2", "freeze": "cgroup-v2",
            "enforced": enforced, "reason": None if enforced else "no cgroup access"}
    t["cold_starts"]["samples"] = [{"total_s": 1.2, "init_ms": v} for v in (900, 700, 800)]
    result: TargetResult = t  # type: ignore[assignment]
    return result


def sized_run(*targets: TargetResult) -> Any:
    return run(list(targets))


#: 1024 MB is cheapest; 1769 and 3008 are as fast (within 5%), 1769 cheaper; the step
#: 1769 -> 3008 gains 3% while cost rises 63%.
TYPICAL = ((512, 100.0, 0.90), (1024, 50.0, 0.88), (1769, 30.0, 0.92), (3008, 29.0, 1.5))


def test_deployment_of_a_sized_result_is_lambda() -> None:
    assert deployment(lam(512, 100.0, 0.9)) == "lambda"


def test_choices_cheapest_fastest_balanced_and_where_it_stops_paying() -> None:
    choice = power.choose(power.sizes(sized_run(*(lam(*s) for s in TYPICAL))))
    assert choice is not None
    assert choice.cheapest.memory_mb == 1024
    assert choice.fastest.memory_mb == 1769  # 3008 is 3% faster: noise, and dearer
    assert choice.balanced.memory_mb == 1769
    assert choice.stops_paying is not None
    assert [s.memory_mb for s in choice.stops_paying] == [1769, 3008]


def test_balanced_weighs_cost_and_duration_as_power_tuning() -> None:
    # 0.5 * cost / 2.0 + 0.5 * p50 / 100: 512 -> 0.75, 1024 -> 0.55, 2048 -> 0.65.
    sizes = power.sizes(sized_run(lam(512, 100.0, 1.0), lam(1024, 40.0, 1.4),
                                  lam(2048, 10.0, 2.0)))
    choice = power.choose(sizes)
    assert choice is not None
    assert (choice.cheapest.memory_mb, choice.fastest.memory_mb,
            choice.balanced.memory_mb) == (512, 2048, 1024)
    assert choice.stops_paying is None  # each step cut p50 by far more than 10%


def test_section_table_and_sentences() -> None:
    doc = sized_run(*(lam(*s) for s in TYPICAL))
    md = render(power.blocks(doc), {"power": "charts/power.png"})
    assert "## Lambda power tuning" in md
    assert "| 512 MB | lambda-512 | 0.29 |" in md
    assert "**Cheapest: 1,024 MB** (lambda-1024)" in md
    assert "**Fastest: 1,769 MB**" in md
    assert "**Balanced: 1,769 MB**" in md
    assert "stops paying above 1,769 MB**: 3,008 MB cuts p50 by only 3% (under 10%; 30.0 " \
           "to 29.0 ms) while a million invocations cost 63% more" in md
    assert "single-threaded code gains nothing above one vCPU" in md
    assert "Unthrottled" not in md
    assert "INVALID" not in md
    assert "![" in md
    assert "charts/power.png" in md


def test_a_slower_bigger_size_is_called_no_faster() -> None:
    md = render(power.blocks(sized_run(lam(1024, 35.3, 0.8), lam(1769, 46.9, 1.6))),
                {"power": "x.png"})
    assert "above 1,024 MB**: 1,769 MB is no faster (p50 35.3 to 46.9 ms) while a million " \
           "invocations cost 100% more" in md


def test_a_size_capped_by_the_machine_is_not_called_single_threaded() -> None:
    doc = sized_run(*(lam(*s) for s in TYPICAL[:3]), lam(3008, 29.0, 1.5, effective=1.0))
    md = render(power.blocks(doc), {"power": "x.png"})
    assert "1.70 (1.00 here)" in md  # AWS's share, capped by this machine's CPUs
    assert "3,008 MB could not get more CPU than 1,769 MB on this machine" in md
    assert "single-threaded" not in md


def test_unthrottled_and_older_runs_say_the_durations_are_not_aws() -> None:
    for enforced in (False, None):
        doc = sized_run(lam(512, 30.0, 0.3, enforced=enforced),
                        lam(1769, 29.0, 0.9, enforced=enforced))
        md = render(power.blocks(doc), {"power": "x.png"})
        assert "do not reflect AWS's CPU shares" in md
        assert "lambda-512 (unthrottled)" in md
        assert "single-threaded" not in md  # flat only because nothing was throttled


def test_a_failing_size_shows_its_errors_and_is_not_chosen() -> None:
    oom = lam(256, 400.0, 0.2, errors=50)
    oom["stages"][0]["error_kinds"] = {"Runtime.ExitError": 50}
    oom["stages"][0]["platform"]["max_memory_used_mb"] = 256.0
    doc = sized_run(oom, lam(512, 100.0, 0.9), lam(1769, 30.0, 0.92))
    sizes = power.sizes(doc)
    assert sizes[0].failed is not None
    assert "Runtime.ExitError x50" in sizes[0].failed
    choice = power.choose(sizes)
    assert choice is not None
    assert choice.cheapest.memory_mb == 512
    md = render(power.blocks(doc), {"power": "x.png"})
    row = next(line for line in md.splitlines() if line.startswith("| 256 MB"))
    assert "| 256 MB | lambda-256 | 0.14 | - | - |" in row  # no duration
    assert "| - | - | 1 user |" in row  # nor a cost
    assert "Not chosen, having failed: 256 MB" in md
    assert "ran out of memory" in md


def test_invalid_stages_hedge_the_choices() -> None:
    doc = sized_run(lam(512, 100.0, 0.9, valid=False), lam(1769, 30.0, 0.92))
    md = render(power.blocks(doc), {"power": "x.png"})
    assert "512 MB** (lambda-512)" in md
    assert "INVALID: read with care" in md
    assert "Some sizes' stages are INVALID" in md


def test_the_least_loaded_stage_is_the_one_judged() -> None:
    t = lam(512, 100.0, 0.9)
    busy = lam(512, 300.0, 0.7, users=4)["stages"][0]
    t["stages"] = [busy, *t["stages"]]
    assert power.size_of(t).p50_ms == 100.0


def test_no_section_with_one_size_or_none() -> None:
    assert power.blocks(sized_run(lam(512, 100.0, 0.9))) == []
    assert not power.applies(sized_run(lam(512, 100.0, 0.9), lam(512, 90.0, 0.9)))
    assert power.blocks(run([target("flask", [stage(1, 100.0, 5.0, 9.0)])])) == []


def test_render_writes_the_power_chart(tmp_path: Path) -> None:
    doc = sized_run(*(lam(*s) for s in TYPICAL))
    rendered = render_run_dir(tmp_path, doc)
    chart = tmp_path / "charts" / "power.png"
    assert chart in rendered.charts
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "## Lambda power tuning" in rendered.markdown.read_text()
    assert "<h2>Lambda power tuning</h2>" in rendered.html.read_text()
    plain = tmp_path / "plain"
    plain.mkdir()
    render_run_dir(plain, sized_run(lam(512, 100.0, 0.9)))
    assert not (plain / "charts" / "power.png").exists()


def test_encodings_are_compared_within_each_memory_size() -> None:
    results = []
    for mb in (512, 1769):
        for wire in ("json", "binary"):
            t = lam(mb, 50.0 if wire == "json" else 40.0, 0.9)
            t["name"], t["encoding"] = f"lambda-{mb}-{wire}", wire
            results.append(t)
    pairs = encodings.pairs(sized_run(*results))
    assert [(p.subject, p.base["name"], p.other["name"]) for p in pairs] == [
        ("lambda-512", "lambda-512-json", "lambda-512-binary"),
        ("lambda-1769", "lambda-1769-json", "lambda-1769-binary")]


def test_power_and_cost_sections_price_a_size_alike_at_the_reports_prices() -> None:
    # report --prices (or any run whose recorded cost was at other prices): the power
    # section's cost per million is the cost section's, from what the size billed.
    doc = sized_run(*(lam(*s) for s in TYPICAL))
    doc["prices"]["lambda_gb_second"] = {"x86_64": 0.0000333334, "arm64": 0.0000266668}
    by_name = {s.name: s for s in power.sizes(doc)}
    priced = {f.name: f for f in figures(doc) if f.pay_per_request}
    assert priced
    for name, f in priced.items():
        assert by_name[name].cost_x86 == pytest.approx(f.per_million_usd["x86_64"])
        assert by_name[name].cost_arm == pytest.approx(f.per_million_usd["arm64"])
    # Twice the GB-second price: 0.90 at the defaults, less the request fee, doubled.
    assert by_name["lambda-512"].cost_x86 == pytest.approx(0.20 + 2 * (0.90 - 0.20), rel=1e-4)


def test_unthrottled_results_are_marked_in_the_decision() -> None:
    doc = sized_run(lam(512, 30.0, 0.3, enforced=False), lam(1769, 29.0, 0.9))
    md = render(summary_blocks(doc, decide(doc)), {})
    assert "| lambda-512 (unthrottled) |" in md
    assert "| lambda-1769 |" in md
    assert "**Unthrottled**: lambda-512 ran without the CPU share" in md
    shaped = sized_run(lam(512, 30.0, 0.3), lam(1769, 29.0, 0.9))
    older = render(summary_blocks(shaped, decide(shaped)), {})
    assert "(unthrottled)" not in older


def test_a_share_rounded_by_the_emulator_is_not_called_capped() -> None:
    # The emulator's describe rounds to 4 places (512 MB: 0.2894); the table showed
    # "0.29 (0.29 here)" as if this machine had given less.
    doc = sized_run(lam(512, 100.0, 0.9), lam(1769, 30.0, 0.92))
    doc["targets"][0]["describe"]["sandbox"].update(cpu_share=0.2894, cpu_share_effective=0.2894)
    md = render(power.blocks(doc), {"power": "x.png"})
    assert "| 512 MB | lambda-512 | 0.29 |" in md
    assert "here)" not in md
