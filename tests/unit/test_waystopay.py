"""Every way to pay for a Lambda result: provisioned concurrency and Managed Instances,
priced from the run's own figures, checked against hand-computed numbers; the prices
file's new keys; and the report's cost section and chart that show them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from reports import costchart, costs, costsection, decision, pricing
from reports.markdown import render as markdown
from reports.pricing import DEFAULT_PRICES, PricesError, load_prices
from reports.schema import RunDoc, TargetResult
from reports.summary import decision_items
from tests.unit import runs

#: Seconds in the default month (730 hours).
MONTH_S = 730 * 3600.0
VOLUME = 10e6


def lambda_target(name: str = "lambda", warm_ms: float = 40.0, memory_mb: int = 1024,
                  cold: int = 0, invocations: int = 1000, init_ms: float | None = 800.0,
                  sandbox: dict[str, Any] | None = None) -> TargetResult:
    """A Lambda result whose warm invocations took ``warm_ms`` on average."""
    # Billed as measured: every invocation its warm duration (no Init in the window).
    gb_s = invocations * warm_ms / 1000 * memory_mb / 1024
    per_million = 1e6 * (0.20e-6 + gb_s / invocations * 0.0000166667)
    platform = runs.lambda_platform(per_million)
    platform.update(memory_mb=memory_mb, cold=cold, invocations=invocations,
                    billed_ms=int(invocations * warm_ms), billed_gb_s=gb_s,
                    duration_warm_ms={"p50": warm_ms, "p90": warm_ms, "p95": warm_ms,
                                      "p99": warm_ms, "p999": None, "min": warm_ms,
                                      "max": warm_ms, "mean": warm_ms})
    t: dict[str, Any] = dict(runs.target(name, [runs.stage(1, 25, warm_ms, warm_ms * 1.2,
                                                           platform=platform)]))
    t["deployment"] = "lambda"
    if init_ms is not None:
        t["cold_starts"] = {"supported": True, "definition": "made up",
                            "samples": [{"total_s": 1.0, "init_ms": init_ms}] * 3,
                            "total_ms": {"p50": 1000.0, "max": 1000.0}}
    if sandbox is not None:
        t["describe"] = {**t["describe"], "sandbox": sandbox}
    result: TargetResult = t  # type: ignore[assignment]
    return result


def options(run: RunDoc, name: str = "lambda") -> dict[str, Any]:
    f = next(f for f in decision.decide(run).figures if f.name == name)
    return {"on demand": f, **{a.way: a for a in f.alternatives}}


def test_provisioned_concurrency_keeps_littles_law_environments_warm() -> None:
    # 50 req/s at the peak x 40 ms = 2 environments of 1 GB kept warm all month, plus
    # each invocation's 40 ms at the provisioned duration price and the request fee.
    pc = options(runs.run([lambda_target()], slo={"p99": 100, "rps": 50}))[
        "provisioned concurrency"]
    assert pc.instances == 2
    configured = 2 * 1.0 * MONTH_S * 0.0000041667
    per_invocation = 0.040 * 1.0 * 0.0000097222 + 0.20e-6
    on_demand = 0.040 * 1.0 * 0.0000166667 + 0.20e-6
    # The requests that find both busy (Erlang's loss formula at the average 3.8 req/s x
    # 40 ms) run on demand, at its price.
    load = VOLUME / MONTH_S * 0.040
    one = load / (1 + load)
    spill = load * one / (2 + load * one)
    assert spill == pytest.approx(0.00995, abs=1e-4)
    assert pc.monthly_usd["x86_64"] == pytest.approx(
        configured + VOLUME * ((1 - spill) * per_invocation + spill * on_demand))
    assert pc.monthly_usd["x86_64"] == pytest.approx(27.817, abs=1e-3)
    arm = 2 * MONTH_S * 0.0000033334 + VOLUME * (
        (1 - spill) * (0.040 * 0.0000077778 + 0.20e-6)
        + spill * (0.040 * 0.0000133334 + 0.20e-6))
    assert pc.monthly_usd["arm64"] == pytest.approx(arm)
    assert pc.per_million_usd["x86_64"] == pytest.approx(pc.monthly_usd["x86_64"] / 10)
    assert pc.prices_as_of == DEFAULT_PRICES["provisioned_as_of"]


def test_provisioned_concurrency_without_a_peak_sizes_for_the_average_rate() -> None:
    # 10 million a month is 3.8 req/s: 3.8 x 0.040 s rounds up to one environment.
    pc = options(runs.run([lambda_target()]))["provisioned concurrency"]
    assert pc.instances == 1
    assert costs.warm_environments(0.0, 0.040) == 1
    assert costs.warm_environments(100.0, 0.040) == 4


def test_erlangs_loss_formula() -> None:
    assert costs.erlang_b(1, 0.6) == pytest.approx(0.375)  # 0.6 / 1.6
    assert costs.erlang_b(2, 1.0) == pytest.approx(0.2)  # 1 x 0.5 / (2 + 0.5)
    assert costs.erlang_b(0, 1.0) == 1.0
    assert costs.erlang_b(3, 0.0) == 0.0


def test_managed_instances_fleet_from_capacity_per_vcpu() -> None:
    # Unthrottled: one environment had one CPU and served 1,000 / 40 = 25 req/s on it; a
    # c7i.large's 2 vCPUs serve 50, so a 500 req/s peak needs 10 instances.
    mi = options(runs.run([lambda_target()], slo={"p99": 100, "rps": 500}))[
        "managed instances"]
    assert mi.instances == 10
    per_instance = 0.08925 * 1.15 * 730
    assert mi.monthly_usd["x86_64"] == pytest.approx(10 * per_instance + VOLUME * 0.20e-6)
    assert mi.monthly_usd["x86_64"] == pytest.approx(751.254, abs=1e-3)
    assert mi.monthly_usd["arm64"] == pytest.approx(10 * 0.0725 * 1.15 * 730 + 2.0)
    assert "c7i.large" in (mi.instance or "")


def test_managed_instances_keep_their_minimum_and_count_the_cpu_share() -> None:
    low = options(runs.run([lambda_target()], slo={"p99": 100, "rps": 10}))
    assert low["managed instances"].instances == 3  # AWS's default, for AZ resilience
    # An enforced half-CPU share took 40 ms: 50 req/s per vCPU, 100 per instance.
    half = {"cpu_share_effective": 0.5, "enforced": True}
    shared = options(runs.run([lambda_target(memory_mb=884, sandbox=half)],
                              slo={"p99": 100, "rps": 500}))
    assert shared["managed instances"].instances == 5


def test_managed_instances_size_the_fleet_from_measured_cpu_time() -> None:
    # The same function at 512 and 1,769 MB: held to 0.29 CPU it took 140 ms, with a CPU
    # 40 ms, but each used 40 ms of CPU: both are 25 req/s per vCPU, 50 per instance.
    fleets = []
    for memory_mb, warm_ms, share in ((512, 140.0, 0.2894), (1769, 40.0, 1.0)):
        t = lambda_target(warm_ms=warm_ms, memory_mb=memory_mb,
                          sandbox={"cpu_share_effective": share, "enforced": True})
        platform = t["stages"][0]["platform"]
        assert platform is not None
        platform["cpu_warm_ms"] = {"p50": 40.0, "p90": 40.0, "p95": 40.0, "p99": 40.0,
                                   "p999": None, "min": 40.0, "max": 40.0, "mean": 40.0}
        fleets.append(options(runs.run([t], slo={"p99": 200, "rps": 500}))[
            "managed instances"].instances)
    assert fleets == [10, 10]


def test_cold_starts_removed_are_estimated_from_the_measured_share(tmp_path: Path) -> None:
    doc = runs.run([lambda_target(cold=10, invocations=1000)])
    md = render(tmp_path, doc)
    # 1% of invocations were cold: at 10 million requests a month, ~100 thousand.
    assert "10 of 1,000 invocations (1.00%) met a new environment" in md
    assert "~100 thousand cold starts" in md
    assert "measured Init (800 ms median" in md
    warm = render(tmp_path / "warm", runs.run([lambda_target(cold=0)]))
    assert "almost no cold starts to remove" in warm


def render(tmp_path: Path, doc: RunDoc) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "run.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path)]) == 0
    return (tmp_path / "report.md").read_text()


def grpc_and_lambdas() -> RunDoc:
    grpc = runs.target("grpc", [runs.stage(1, 1500, 0.6, 1.0), runs.stage(4, 2500, 1.5, 3.0)])
    return runs.run([grpc, lambda_target("lambda-512", warm_ms=60.0, memory_mb=512),
                     lambda_target("lambda-1769", warm_ms=40.0, memory_mb=1769)])


def test_cost_section_shows_every_way_to_pay_dated_and_sourced(tmp_path: Path) -> None:
    md = render(tmp_path, grpc_and_lambdas())
    section = md.split("### Every way to pay")[1].split("\n## ")[0]
    for name in ("lambda-512", "lambda-1769"):
        for way in ("on demand", "provisioned concurrency", "managed instances"):
            assert f"| {name} | {way} |" in section
    assert "| grpc | always on |" in section
    assert f"| {DEFAULT_PRICES['provisioned_as_of']} | {DEFAULT_PRICES['provisioned_source']}"\
        in section
    assert DEFAULT_PRICES["managed_source"] in section
    assert "Little's law" in section
    # The decision's cost comparison has a line for each other way to pay.
    assert "lambda-1769 with provisioned concurrency" in md
    assert "lambda-1769 with managed instances" in md
    assert "Provisioned concurrency, as of 2026-12-02" in md


def test_the_chart_draws_the_other_ways_for_the_cheapest_lambda_size_only() -> None:
    d = decision.decide(grpc_and_lambdas())
    figs, others = costchart.series(d)
    assert {f.name for f in figs} == {"grpc", "lambda-512", "lambda-1769"}
    # On demand, 512 MB x 60 ms costs less than 1,769 MB x 40 ms: its ways are drawn.
    assert [a.way for a in others] == ["provisioned concurrency", "managed instances"]
    assert all(a.name.startswith("lambda-512 (") for a in others)
    # Every line can be drawn across the chart's volumes.
    for f in [*figs, *others]:
        assert costs.monthly_cost_at(f, 1e9) is not None
    assert costchart.cost_vs_volume(grpc_and_lambdas())[:8] == b"\x89PNG\r\n\x1a\n"


def test_break_even_against_on_demand_is_where_the_costs_cross() -> None:
    # 1 GB, 40 ms: on demand costs 0.20e-6 + 0.04 x 0.0000166667 a request; provisioned
    # saves 0.04 x (0.0000166667 - 0.0000097222) on each request it serves against one
    # environment's month: about 39.4 million requests if none spilled over. They do (N
    # is the average concurrency, so many find every environment busy and are billed on
    # demand), so the break-even is higher, where the two costs meet.
    d = decision.decide(runs.run([lambda_target()]))
    lam = d.figures[0]
    pc = next(a for a in lam.alternatives if a.way == "provisioned concurrency")
    start, flips = costs.crossings(pc, lam)
    saving = 0.040 * (0.0000166667 - 0.0000097222)
    assert not start
    assert flips[0] > 1.5 * MONTH_S * 0.0000041667 / saving
    assert costs.monthly_cost_at(pc, flips[0]) == pytest.approx(
        costs.monthly_cost_at(lam, flips[0]), rel=1e-3)
    text = "\n".join(decision_items(d))
    assert "lambda with provisioned concurrency" in text


def test_new_price_keys_override_and_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("managed_instance_type: {x86_64: m7i.large}\n"
                    "managed_instance_hour: {x86_64: 0.1008}\nmanaged_min_instances: 1\n")
    prices = load_prices(good)
    assert prices["managed_instance_type"] == {"x86_64": "m7i.large", "arm64": "c7g.large"}
    assert prices["managed_instance_hour"]["x86_64"] == 0.1008
    assert prices["managed_as_of"] == f"{DEFAULT_PRICES['managed_as_of']} (with good.yaml)"
    assert prices["provisioned_as_of"] == DEFAULT_PRICES["provisioned_as_of"]
    bad = {"fee.yaml": ("managed_fee: 15\n", "a fraction of the EC2 price"),
           "neg.yaml": ("provisioned_gb_second: {arm64: -1}\n",
                        r"provisioned_gb_second\.arm64"),
           "flat.yaml": ("provisioned_duration_gb_second: 0.00001\n", "must map architectures"),
           "vcpus.yaml": ("managed_instance_vcpus: {x86_64: 0}\n", "whole number of vCPUs"),
           "type.yaml": ("managed_instance_type: {x86_64: 2}\n",
                         r"managed_instance_type\.x86_64' must be text"),
           "whole.yaml": ("managed_min_instances: 2.5\n", "whole number"),
           "date.yaml": ("provisioned_as_of: 2026\n", "must be text"),
           "key.yaml": ("managed_fees: 0.1\n", "unknown price key 'managed_fees'")}
    for name, (text, message) in bad.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(PricesError, match=message):
            load_prices(path)


def test_an_old_run_without_the_new_prices_still_renders(tmp_path: Path) -> None:
    doc = grpc_and_lambdas()
    old = {k: v for k, v in doc["prices"].items()
           if not k.startswith(("provisioned", "managed")) and k != "container_as_of"}
    old["as_of"] = "2026-10"
    doc["prices"] = old  # type: ignore[typeddict-item]
    prices = pricing.effective_prices(doc)
    assert prices["provisioned_gb_second"] == DEFAULT_PRICES["provisioned_gb_second"]
    # Its always-on prices were recorded, dated with the run's one date.
    assert prices["container_as_of"] == "2026-10"
    assert "container_as_of" not in pricing.prices_filled(doc)
    assert "provisioned_as_of" in pricing.prices_filled(doc)
    md = render(tmp_path, doc)
    assert "| lambda-1769 | managed instances |" in md
    assert "prices as of 2026-10 (https://aws.amazon.com/fargate" in md


def test_the_chart_note_says_when_a_cheaper_size_was_passed_over() -> None:
    # lambda-512 is cheaper on demand but misses the objective (INVALID): the chart draws
    # lambda-1769's other ways, and the note must not call it the cheapest size outright.
    doc = grpc_and_lambdas()
    doc["targets"][1]["stages"][0]["valid"] = False
    d = decision.decide(doc)
    by_name = {f.name: f for f in d.figures}
    cheap, chosen = by_name["lambda-512"], by_name["lambda-1769"]
    assert cheap.monthly_usd["x86_64"] < chosen.monthly_usd["x86_64"]
    assert costsection.cheapest_lambda(d) is chosen
    text = markdown(costsection.blocks(doc, d), {})
    assert "for lambda-1769 only: the Lambda size cheapest on demand at the expected volume " \
           "among those meeting the objective" in text
