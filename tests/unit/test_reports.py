"""Reports rendered from result files: content, not just existence."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path

import pytest

from harness.results import write_run
from reports import findings
from reports.charts import CHARTS
from reports.render import render_run_dir
from reports.schema import ResultFileError, RunDoc, load_run
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
    assert "http://" not in html
    assert "https://" not in html
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
