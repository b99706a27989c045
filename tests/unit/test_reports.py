"""Reports rendered from result files: content, not just existence."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from harness.results import write_run
from reports import charts, decision, findings
from reports.charts import CHARTS
from reports.document import describe_line
from reports.render import render_run_dir
from reports.schema import ResultFileError, RunDoc, load_run
from reports.summary import decision_items
from scenarios.catalogue import Scenario
from tests.unit import runs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    scenario = Scenario(name="unit", description="", concurrency=(1, 2, 4), warmup_s=0.5,
                        stability_windows=1, max_windows=1,
                        window_s=2.0, cooldown_s=0.5, drain_timeout_s=1.0, sha256="0" * 64,
                        path="unit.yaml")
    runs.simulate_fast_slow(out, scenario)
    return out


def test_markdown_has_tables_summary_and_charts(run_dir: Path) -> None:
    rendered = render_run_dir(run_dir)
    md = rendered.markdown.read_text()
    assert "## Summary" in md
    # Test targets' figures never pass for a measurement: said at the top.
    assert md.startswith("# SIMULATED: deploybench report")
    assert "**Simulated figures, not a measurement**: fast, slow are test targets" in md
    # fast: 2 servers x 1 ms = 2,000 req/s; slow: 500 req/s; 4.00x.
    assert "**fast**: peak 2,000 req/s" in md
    assert "fast reached 4.00x the peak throughput of slow" in md
    assert "| load | req/s | p50 ms |" in md
    for chart in rendered.charts:
        assert f"charts/{chart.name}" in md
        assert chart.read_bytes().startswith(PNG)
        assert chart.stat().st_size > 5000  # a drawn chart, not an empty canvas


def test_html_is_self_contained(run_dir: Path) -> None:
    html = render_run_dir(run_dir).html.read_text()
    sources = re.findall(r'src="([^"]+)"', html)
    assert len(sources) == len(CHARTS)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    # Nothing loaded from elsewhere (a price's source may be cited as text).
    assert re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html) is None
    assert "url(" not in html
    assert "@import" not in html
    assert "<script" not in html
    assert "<strong>fast</strong>" in html


def test_report_rerenders_from_run_json_alone(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "run.json").write_bytes((run_dir / "run.json").read_bytes())
    rendered = render_run_dir(tmp_path)
    assert "fast" in rendered.markdown.read_text()


def test_failed_target_and_warnings_are_shown(run_dir: Path, tmp_path: Path) -> None:
    run: RunDoc = copy.deepcopy(load_run(run_dir))
    run["targets"][1] = {**run["targets"][1], "status": "failed", "stages": [],
                         "error": "flask server exited with code 3"}
    stage = run["targets"][0]["stages"][0]
    stage["loadgen_cpu_percent"] = 97.0
    stage["valid"] = False
    stage["reasons"] = ["load generator CPU 97% of its core (> 90%): it, not the target, "
                        "may have been the limit"]
    stage["errors"] = 5
    stage["error_kinds"] = {"ConnectionRefusedError: refused": 5}
    run["status"] = "partial"
    write_run(tmp_path, run)
    md = render_run_dir(tmp_path).markdown.read_text()
    assert "slow** failed: flask server exited with code 3" in md
    assert "## INVALID stages" in md
    assert "**fast** at 1 user: load generator CPU 97% of its core" in md
    assert "| INVALID |" in md
    assert "2 of 3 stages VALID" in md
    assert "ConnectionRefusedError" in md
    assert "The run is partial" in md


def test_warnings_absent_on_a_clean_run(run_dir: Path) -> None:
    assert findings.warnings(load_run(run_dir)) == []


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text('{"schema_version": 99}')
    with pytest.raises(ResultFileError, match="schema_version 99"):
        load_run(tmp_path)


def test_missing_run_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="deploybench run"):
        load_run(tmp_path)


def test_lambda_cost_on_shared_cpus_is_flagged(run_dir: Path, tmp_path: Path) -> None:
    run: RunDoc = copy.deepcopy(load_run(run_dir))
    platform = {"environments_max": 4, "cost_per_million_usd": {"x86_64": 0.5}}
    for stage in run["targets"][0]["stages"]:
        stage["platform"] = {**platform, "environments_max": stage["concurrency"]}
    text = " ".join(findings.warnings(run))
    assert "at 2 users, 4 users more environments ran than the 1 target CPU(s)" in text
    assert "$0.500 per million" in text


def test_open_loop_stages_are_their_own_series_on_the_p99_chart(
        monkeypatch: pytest.MonkeyPatch) -> None:

    drawn: list[Any] = []

    def keep(fig: Any, run: Any) -> bytes:
        drawn.append(fig)
        return b""

    monkeypatch.setattr(charts, "_png", keep)
    run = runs.run([
        runs.target("flask", [runs.stage(1, 400, 2.0, 5.0), runs.stage(4, 900, 4.0, 12.0),
                              runs.open_stage(600, 590, 30.0),
                              runs.open_stage(200, 199, 8.0)]),
        runs.target("grpc", [runs.open_stage(200, 200, 3.0)]),  # a `rate` run only
    ])
    charts.p99_vs_throughput(run)
    ax = drawn[0].axes[0]
    try:
        lines = {line.get_label(): line for line in ax.get_lines()}
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[:3] == ["flask", "flask (open loop)", "grpc (open loop)"]
        assert list(lines["flask"].get_xdata()) == [400, 900]
        flask_open = lines["flask (open loop)"]
        assert list(flask_open.get_xdata()) == [199, 590]  # achieved, by offered rate
        assert list(flask_open.get_ydata()) == [8.0, 30.0]
        assert flask_open.get_linestyle() == "None"  # markers only
        assert flask_open.get_color() == lines["flask"].get_color()
        assert list(lines["grpc (open loop)"].get_ydata()) == [3.0]
        assert "200/s" in [t.get_text() for t in ax.texts]
        # p99 from 3 to 30 ms: autoscale's margin goes below 0, the axis is log all the
        # same, and its label says what it is.
        assert ax.get_yscale() == "log"
        assert "log scale" in ax.get_ylabel()
    finally:
        plt.close(drawn[0])


def peaks(tmp_path: Path, a: list[float], b: list[float]) -> str:
    """report.md of two targets whose peak stages kept windows of these req/s."""
    def target(name: str, windows: list[float]) -> Any:
        rps = sum(windows) / len(windows)
        return runs.target(name, [runs.stage(4, rps, 4.0, 10.0,
                                             windows=[(w, 4.0, 10.0) for w in windows])])

    write_run(tmp_path, runs.run([target("flask", a), target("grpc", b)]))
    return render_run_dir(tmp_path).markdown.read_text()


def test_one_run_compares_peak_throughputs_without_a_verdict(tmp_path: Path) -> None:
    """One run's windows are back to back and kept because they agreed: the ratio and their
    spread, never a p-value, "they differ" or "a tie" (trials: tests/unit/test_trials.py)."""
    md = peaks(tmp_path / "apart", [999, 1001, 1000], [1190, 1210, 1200])
    assert "grpc reached 1.20x the peak throughput of flask: one run: windows spread flask " \
        "±0.1%, grpc ±0.8%; not tested, --trials 3 tests it" in md
    close = peaks(tmp_path / "close", [990, 1010, 1000], [1000, 1040, 1020])
    assert "grpc reached 1.02x the peak throughput of flask: one run: windows spread flask " \
        "±1.0%, grpc ±2.0%; not tested, --trials 3 tests it" in close
    single = peaks(tmp_path / "single", [1000], [1050])
    assert "grpc reached 1.05x the peak throughput of flask: one run: not tested, " \
        "--trials 3 tests it" in single
    for text in (md, close, single):
        assert not any(word in text for word in ("Welch", "they differ", "a tie"))


def test_an_unusable_calibration_is_said_and_endpoints_get_their_protocol() -> None:
    run: Any = runs.run([
        runs.target("grpc", [runs.stage(4, 950, 2.0, 5.0)]),
        runs.target("k8s-json", [runs.stage(4, 7500, 2.0, 5.0)]),  # an http:// endpoint
        runs.target("k8s-grpc", [runs.stage(4, 900, 2.0, 5.0)]),
        runs.target("fn", [runs.stage(4, 100, 2.0, 5.0)]),
    ])
    run["targets"][1]["deployment"] = "k8s"  # measured per encoding
    run["metadata"]["endpoints"] = {"k8s": "http://10.0.0.5:8000",
                                    "k8s-grpc": "grpc://10.0.0.6:50051",
                                    "fn": "lambda://eu-west-1/predict"}
    ceilings = {"http": {"rps": 9000.0, "valid": True, "limited_by": "load generator"},
                "grpc": {"rps": 1000.0, "valid": True,
                         "limited_by": "neither side saturated (latency-bound)"}}
    run["metadata"]["calibration"] = {"created_at": "then", "ceilings": ceilings}
    text = "\n".join(findings.warnings(run))
    assert "k8s-json reached 7,500 req/s at 4 users, 83% of the harness's own http ceiling" \
        in text
    assert "The calibration (`deploybench calibrate` of then) for protocol grpc could not " \
        "be used: neither the load generator nor the null server was saturated at its best " \
        "stage (1,000 req/s, latency-bound), so that figure is no ceiling. So whether grpc, " \
        "k8s-grpc came near the harness's own ceiling is unknown. Run `deploybench " \
        "calibrate --protocols grpc` again" in text
    assert "No calibration applies to endpoint fn: it is a Lambda function called through " \
        "the Invoke API" in text
    ceilings["grpc"] = {"rps": 1000.0, "valid": False, "reasons": ["unstable: made up"],
                        "limited_by": "load generator"}
    ceilings["http"] = {"error": "null-http server exited"}
    text = "\n".join(findings.warnings(run))
    assert "for protocol grpc could not be used: its best null-target stage was INVALID " \
        "(unstable: made up)" in text
    assert "for protocol http could not be used: its null target failed (null-http server " \
        "exited). So whether k8s-json came near" in text
    del ceilings["http"]
    assert "for protocol http could not be used: the calibration has no figure for it" \
        in "\n".join(findings.warnings(run))


def test_a_run_without_calibration_says_the_check_was_skipped_and_how_to_make_one() -> None:
    run: Any = runs.run([runs.target("grpc", [runs.stage(4, 950, 2.0, 5.0)]),
                         runs.target("flask", [runs.stage(4, 900, 2.0, 5.0)])])
    run["metadata"]["calibration"] = None
    run["metadata"]["calibration_note"] = ("no calibration on this machine: run "
                                           "`deploybench calibrate`")
    text = "\n".join(findings.warnings(run))
    assert "No calibration of the harness applied to this run (no calibration on this " \
        "machine), so whether the highest loads came near the load generator's own ceiling " \
        "was not checked (grpc, http). Run `deploybench calibrate --protocols grpc,http " \
        "--target-cpus 1 --loadgen-cpus 0` once on this machine" in text
    # The test targets of a simulated run have no protocol: no check was due, none is said.
    fake: Any = runs.run([runs.target("fast", [runs.stage(4, 900, 2.0, 5.0)])])
    fake["metadata"]["calibration"] = None
    assert not any("calibration" in line for line in findings.warnings(fake))


def test_a_container_run_shows_its_image_and_limits_in_the_report() -> None:
    t: Any = runs.target("flask", [runs.stage(4, 900, 2.0, 5.0)])
    t["describe"].update({"runtime": "docker (host network)", "image":
                          "deploybench-flask:latest", "image_id": "sha256:0123abcd",
                          "image_size_mb": 812.4, "image_created": "2026-12-02T03:12:45.1Z",
                          "cpuset": [1], "memory_limit_mb": 1536, "network": "host",
                          "limits_from": "docker inspect"})
    line = describe_line(t)
    assert "image deploybench-flask:latest (sha256:0123abcd, 812 MB, built " \
        "2026-12-02T03:12:45)" in line
    assert "container limits (docker inspect): cpuset 1, memory 1,536 MB, network host" \
        in line


def stalled_stage(p99_all: float, max_all: float) -> Any:
    """4 users, steady p99 10 ms / max 12 ms, and everything after warm-up as given."""
    stage = runs.stage(4, 900, 2.0, 10.0)
    stage["latency_ms"]["max"] = 12.0
    stage["all_measured"] = {"from": 0.0, "to": 9.0, "discarded_windows": 2,
                             "requests": 9000, "errors": 0,
                             "latency_ms": {**stage["latency_ms"], "p99": p99_all,
                                            "max": max_all},
                             "worst_at_s": 4.25, "worst_ms": max_all}
    return stage


def test_a_stall_in_a_discarded_window_is_said_and_flags_the_decision() -> None:
    run: Any = runs.run([runs.target("grpc", [stalled_stage(965.0, 1003.0)])])
    text = "\n".join(findings.warnings(run))
    assert "grpc at 4 users: a 1.0 s stall at 4.2 s into the measurement, in a window left " \
        "out of the steady state (steady state: p99 10.0 ms, max 12.0 ms; everything " \
        "measured after the warm-up: p99 965 ms, max 1,003 ms)" in text
    items = "\n".join(decision_items(decision.decide(run)))
    assert "meets p99 <= 100 ms in steady state only: at 4 users, with the 2 windows left " \
        "out as still settling, p99 was 965 ms and max 1,003 ms" in items
    # A tail no worse than twice the steady state's is no stall, and nothing is flagged.
    calm: Any = runs.run([runs.target("grpc", [stalled_stage(15.0, 20.0)])])
    assert not any("stall" in line for line in findings.warnings(calm))
    assert "steady state only" not in "\n".join(decision_items(decision.decide(calm)))
