"""The decision: who meets the objective, what each costs, the recommendation and ties."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pytest

from harness.options import parse_slo, parse_volume
from harness.results import write_run
from reports import costs, decision, loads
from reports import objective as objectives
from reports.pricing import DEFAULT_PRICES, PricesError, load_prices
from reports.render import render_run_dir
from reports.schema import RunDoc, TargetResult
from reports.summary import decision_items
from tests.unit import runs

#: One always-on instance of 1 vCPU and 2 GB for a month at the default x86 prices.
INSTANCE_MONTH = (DEFAULT_PRICES["container_vcpu_hour"]["x86_64"]
                  + 2 * DEFAULT_PRICES["container_gb_hour"]["x86_64"]) * 730


def grpc_and_lambda(**kwargs: object) -> RunDoc:
    grpc = runs.target("grpc", [runs.stage(1, 1500, 0.6, 1.0), runs.stage(4, 2500, 1.5, 3.0)])
    lam = runs.target("lambda", [
        runs.stage(1, 1000, 0.9, 1.5, platform=runs.lambda_platform(0.23)),
        runs.stage(4, 700, 5.0, 8.0, platform=runs.lambda_platform(0.40, environments=4)),
    ])
    return runs.run([grpc, lam], **kwargs)  # type: ignore[arg-type]


def recommended(run: RunDoc) -> str | None:
    best = decision.decide(run).best
    return best.name if best else None


def test_pay_per_request_wins_at_low_volume_with_its_fair_cost() -> None:
    d = decision.decide(grpc_and_lambda())
    assert d.best is not None
    assert d.best.name == "lambda"
    lam = next(f for f in d.figures if f.name == "lambda")
    # Priced at its least loaded stage (one environment per CPU), not the shared-CPU one.
    assert lam.per_million_usd["x86_64"] == pytest.approx(0.23)
    assert lam.monthly_usd["x86_64"] == pytest.approx(0.23 * 10)
    grpc = next(f for f in d.figures if f.name == "grpc")
    assert grpc.instances == 1
    assert grpc.monthly_usd["x86_64"] == pytest.approx(INSTANCE_MONTH)
    text = "\n".join(decision_items(d))
    assert "Recommended: **lambda**" in text
    assert "**grpc** meets it but costs more" in text


def test_recommendation_changes_with_the_objective() -> None:
    run = grpc_and_lambda(slo={"p99": 1.2})
    assert recommended(run) == "grpc"
    text = "\n".join(decision_items(decision.decide(run)))
    assert "**lambda** does not meet p99 <= 1.2 ms: its lowest p99 over VALID stages was " \
        "1.50 ms, at 1 user" in text


def test_recommendation_changes_with_the_volume() -> None:
    assert recommended(grpc_and_lambda(monthly_requests=1e9)) == "grpc"


def test_break_even_is_where_the_costs_cross() -> None:
    d = decision.decide(grpc_and_lambda())
    grpc, lam = d.figures
    volume = costs.break_even(grpc, lam)
    assert volume == pytest.approx(INSTANCE_MONTH / 0.23e-6, rel=1e-3)
    text = "\n".join(decision_items(d))
    assert "Cost: lambda (pay per request) is cheaper than grpc (always on) below 157 million" \
        in text


def test_a_throughput_objective_needs_more_instances() -> None:
    d = decision.decide(grpc_and_lambda(slo={"p99": 100.0, "rps": 6000.0}))
    grpc = next(f for f in d.figures if f.name == "grpc")
    assert grpc.instances == math.ceil(6000 / 2500)
    assert grpc.monthly_usd["x86_64"] == pytest.approx(3 * INSTANCE_MONTH)


def noisy(name: str, p99s: list[float]) -> TargetResult:
    mean = sum(p99s) / len(p99s)
    return runs.target(name, [runs.stage(1, 1500, 0.6, 1.0),
                              runs.stage(4, 2500, 1.5, mean,
                                         windows=[(2500, 1.5, p) for p in p99s]),
                              runs.stage(16, 2600, 6.0, 4 * mean)])


def trialled(name: str, p99s: list[float]) -> TargetResult:
    """A target whose 4-user stage ran once per trial, with these p99s."""
    stages = [runs.stage(1, 1500, 0.6, 1.0)]
    for k, p99 in enumerate(p99s):
        stage = runs.stage(4, 2500, 1.5, p99, windows=[(2500, 1.5, p99)] * 3)
        stage["trial"] = k
        stages.append(stage)
    stages.append(runs.stage(16, 2600, 6.0, 4 * max(p99s)))
    return runs.target(name, stages)


def with_trials(targets: list[TargetResult]) -> Any:
    run: Any = runs.run(targets)
    run["metadata"]["trials"] = 3
    return run


def test_a_difference_within_the_noise_is_a_tie() -> None:
    run = with_trials([trialled("grpc", [2.9, 3.1, 3.3]), trialled("flask", [3.1, 3.5, 2.9])])
    d = decision.decide(run)
    assert d.best is not None
    assert d.best.name == "grpc"
    assert [f.name for f in d.ties] == ["flask"]
    text = "\n".join(decision_items(d))
    assert "**flask** ties with it" in text
    assert "over trials, not significant at 5%" in text


def test_a_significant_difference_is_not_a_tie() -> None:
    run = with_trials([trialled("flask", [3.0, 3.1, 2.9]),
                       trialled("grpc", [1.0, 1.05, 0.95])])
    d = decision.decide(run)
    assert d.best is not None
    assert d.best.name == "grpc"
    assert d.ties == ()
    text = "\n".join(decision_items(d))
    assert "**flask** meets it at a cost that cannot be told apart, but is slower" in text
    assert "Welch p = 0.000 over trials" in text


def test_one_run_is_never_tested_only_compared() -> None:
    """One run's windows are back to back and kept because they agreed: no p-value and
    no tie or difference from them, only the figures and the 10% rule, said as such."""
    close = runs.run([noisy("grpc", [2.9, 3.1, 3.3]), noisy("flask", [3.1, 3.5, 2.9])])
    text = "\n".join(decision_items(decision.decide(close)))
    assert "**flask** is as good by this run's figures" in text
    assert "within 10%, in one run, not tested: --trials 3 repeats every stage" in text
    apart = runs.run([noisy("flask", [3.0, 3.1, 2.9]), noisy("grpc", [1.0, 1.05, 0.95])])
    text += "\n".join(decision_items(decision.decide(apart)))
    assert "**flask** meets it at a cost that cannot be told apart, but is slower" in text
    assert "more than 10% apart, in one run, not tested" in text
    assert not any(word in text for word in ("Welch", "ties with", "significant"))


def test_inprocess_first_then_the_best_service() -> None:
    run = runs.run([runs.target("inprocess", [runs.stage(1, 4000, 0.2, 0.4),
                                              runs.stage(4, 5000, 0.3, 0.5),
                                              runs.stage(16, 5100, 3.0, 5.0)]),
                    noisy("flask", [3.0, 3.1, 2.9]), noisy("grpc", [1.0, 1.05, 0.95])])
    d = decision.decide(run)
    assert d.best is not None
    assert d.best.name == "inprocess"
    assert d.best_service is not None
    assert d.best_service.name == "grpc"
    assert "If the model must run as its own service" in "\n".join(decision_items(d))


def test_invalid_and_failed_targets_do_not_qualify() -> None:
    run = runs.run([
        runs.target("grpc", [runs.stage(1, 1500, 0.6, 1.0, valid=False)]),
        runs.target("flask", [], status="failed", error="flask server exited with code 3"),
    ])
    d = decision.decide(run)
    assert d.best is None
    text = "\n".join(decision_items(d))
    assert "No deployment met p99 <= 100 ms" in text
    assert "**grpc** does not meet p99 <= 100 ms: no VALID stage" in text
    assert "**flask** failed: flask server exited with code 3" in text


def test_common_load_is_the_middle_shared_level() -> None:
    a = runs.target("grpc", [runs.stage(u, 100, 1, 2) for u in (1, 4, 16, 32)])
    b = runs.target("flask", [runs.stage(u, 100, 1, 2) for u in (1, 4, 16)])
    assert loads.common_load(runs.run([a, b])) == ("closed", 4.0)
    assert loads.common_load(runs.run([a])) == ("closed", 4.0)


def test_defaults_are_stated() -> None:
    obj = objectives.objective(grpc_and_lambda())
    assert obj.latency_ms == {"p99": objectives.DEFAULT_SLO_P99_MS}
    assert obj.monthly_requests == objectives.DEFAULT_MONTHLY_REQUESTS
    assert set(obj.defaulted) == {"latency", "volume", "errors"}
    assert obj.error_budget == objectives.DEFAULT_ERROR_BUDGET


def test_single_target_report_renders(tmp_path: Path) -> None:
    write_run(tmp_path, runs.run([noisy("grpc", [1.0, 1.1, 0.9])]))
    md = render_run_dir(tmp_path).markdown.read_text()
    assert "Recommended: **grpc**" in md
    assert "ties with it" not in md


def test_volumes_parse() -> None:
    assert parse_volume("10M") == 10e6
    assert parse_volume("250k") == 250e3
    assert parse_volume("1.5B") == 1.5e9
    assert parse_volume("2e7") == 2e7
    assert parse_volume("1,000,000") == 1e6
    for bad in ("lots", "0", "-5M", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_volume(bad)


def test_container_prices_override_and_check(tmp_path: Path) -> None:
    good = tmp_path / "p.yaml"
    good.write_text("container_vcpu_hour: {x86_64: 0.05}\ncontainer_min_instances: 2\n")
    prices = load_prices(good)
    assert prices["container_vcpu_hour"] == {"x86_64": 0.05, "arm64": 0.03238}
    assert prices["container_min_instances"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("container_gb_hour: {x86_64: cheap}\n")
    with pytest.raises(PricesError, match=r"container_gb_hour\.x86_64"):
        load_prices(bad)
    flat = tmp_path / "flat.yaml"
    flat.write_text("container_vcpu_hour: 0.05\n")
    with pytest.raises(PricesError, match="must map architectures"):
        load_prices(flat)


def test_break_even_sizes_for_the_peak() -> None:
    d = decision.decide(grpc_and_lambda(slo={"p99": 100.0, "rps": 6000.0}))
    grpc, lam = d.figures
    # Three instances for 6,000 req/s at 2,500 each: the break-even moves with them.
    assert costs.break_even(grpc, lam, peak_rps=6000.0) == \
        pytest.approx(3 * INSTANCE_MONTH / 0.23e-6, rel=1e-3)
    assert "below 470 million requests a month" in "\n".join(decision_items(d))


def test_the_cheaper_one_can_alternate_as_instances_are_added() -> None:
    # 10 req/s per instance (26.3 million a month) against $1.50 per million: one
    # instance is cheaper from 24.0 to 26.3 million, then Lambda again until 48.1 million.
    slow = runs.target("flask", [runs.stage(1, 10, 50, 80), runs.stage(4, 10, 60, 90)])
    lam = runs.target("lambda", [runs.stage(1, 10, 50, 80,
                                            platform=runs.lambda_platform(1.5)),
                                 runs.stage(4, 10, 60, 90,
                                            platform=runs.lambda_platform(1.5))])
    d = decision.decide(runs.run([slow, lam]))
    start, flips = costs.crossings(d.figures[0], d.figures[1])
    assert not start
    assert flips[0] == pytest.approx(INSTANCE_MONTH / 1.5e-6, rel=1e-3)
    assert flips[1] == pytest.approx(10 * 730 * 3600, rel=1e-3)
    text = "\n".join(decision_items(d))
    assert "flask (always on) is cheaper than lambda (pay per request) from 24 million to " \
        "26.3 million, from 48.1 million to 52.6 million" in text
    assert "the cheaper one alternates" in text
    assert "above that" not in text


def test_no_common_load_is_not_passed_off_as_a_tie() -> None:
    grpc = runs.target("grpc", [runs.stage(1, 1500, 0.6, 1.0), runs.stage(2, 2000, 1, 2)])
    flask = runs.target("flask", [runs.stage(4, 1500, 2, 4), runs.stage(8, 1600, 4, 8)])
    d = decision.decide(runs.run([grpc, flask]))
    assert d.load is None
    text = "\n".join(decision_items(d))
    assert "their latency could not be compared (no load that both ran)" in text
    assert "ties with it" not in text


def test_a_cost_that_could_not_be_estimated_is_said() -> None:
    lam = runs.target("lambda", [runs.stage(1, 1000, 0.9, 1.5), runs.stage(4, 900, 3, 5)])
    d = decision.decide(runs.run([noisy("grpc", [1.0, 1.1, 0.9]), lam]))
    assert d.best is not None
    assert d.best.name == "grpc"
    text = "\n".join(decision_items(d))
    assert "**lambda** meets it, but its cost could not be estimated" in text


def test_an_invalid_stage_that_met_the_objective_is_named() -> None:
    grpc = runs.target("grpc", [runs.stage(1, 1500, 0.6, 0.9, valid=False),
                                runs.stage(4, 2500, 1.5, 3.0)])
    d = decision.decide(runs.run([grpc], slo={"p99": 1.0}))
    assert d.best is None
    assert "its lowest p99 over VALID stages was 3.00 ms, at 4 users (an INVALID stage, " \
        "1 user, met it, but cannot be relied on)" in "\n".join(decision_items(d))


def failing(name: str, error_rate: float) -> TargetResult:
    """Fast enough at every load, but failing this share of its requests (VALID: the
    scenario's own bound is looser)."""
    stages = [runs.stage(users, rps, 1.0, 5.0) for users, rps in ((1, 1000), (4, 2500))]
    for stage in stages:
        stage["errors"] = int(stage["requests"] * error_rate)
        stage["error_rate"] = error_rate
    return runs.target(name, stages)


def test_errors_count_against_the_objective_and_goodput_is_reported() -> None:
    run = runs.run([failing("flask", 0.02), failing("grpc", 0.0)])
    d = decision.decide(run)
    flask = next(f for f in d.figures if f.name == "flask")
    assert not flask.meets  # p99 5 ms <= 100 ms, but 2% of requests failed
    text = "\n".join(decision_items(d))
    assert "**flask** does not meet p99 <= 100 ms: its VALID stages within p99 <= 100 ms " \
        "failed more than the 0.10% error budget (least: 2.00% at 1 user" in text
    assert "Recommended: **grpc**" in text
    assert "errors 0.00%; goodput 2,500 req/s answered within 100 ms" in text
    # A looser budget, given: 2% is within it.
    loose = runs.run([failing("flask", 0.02)], slo={"p99": 100.0, "errors": 0.05})
    assert next(f for f in decision.decide(loose).figures).meets


def test_goodput_counts_only_answers_within_the_bound() -> None:
    stage = runs.stage(4, 1000, 2.0, 10.0)  # its distribution: 1.0, 2.0 (p50), 10 (p99), 20
    assert objectives.goodput(stage, {"p99": 10.0}) == pytest.approx(990.0)
    assert objectives.goodput(stage, {"p99": 25.0}) == pytest.approx(1000.0)
    assert objectives.goodput(stage, {"p99": 0.1}) == pytest.approx(0.0)


def test_the_error_budget_is_parsed_as_a_share() -> None:
    assert parse_slo("p99=50ms,errors=0.1%") == {"p99": 50.0, "errors": 0.001}
    assert parse_slo("errors=0.02")["errors"] == 0.02
    for bad in ("errors=150%", "errors=-1%", "errors=lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_slo(bad)


def test_trials_without_spread_are_not_called_one_run() -> None:
    run = with_trials([trialled("grpc", [3.0, 3.0, 3.0]), trialled("flask", [3.1, 3.1, 3.1])])
    text = "\n".join(decision_items(decision.decide(run)))
    assert "**flask** is as good by this run's figures" in text
    assert "(within 10%, not tested: the trials did not vary)" in text
    assert "in one run" not in text
