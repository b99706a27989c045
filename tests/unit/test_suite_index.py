"""The suite's index report (reports.suiteindex), rendered from suite folders built here:
a manifest written by hand over run folders of simulated runs (the fake target under
another deployment's name, with a service time chosen per cell), so the summary's words
and the tables' figures can be asserted exactly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from harness.cpus import CpuPlan
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.runner import Runner, RunPlan
from reports import suitesummary
from reports.decision import decide
from reports.suitecells import SuiteCell
from reports.suiteindex import render_suite_dir
from reports.suiteschema import (
    COMPLETE,
    FAILED,
    PARTIAL,
    PENDING,
    SUITE_SCHEMA,
    CellRecord,
    SuiteError,
    SuiteManifest,
)
from scenarios.catalogue import Scenario
from targets.fake import FakeTarget
from tests.unit import runs

PNG = b"\x89PNG\r\n\x1a\n"



def scenario(window_s: float) -> Scenario:
    """Simulated time: a long window costs no wall time. 120 s gives the 300 ms grpc 800
    requests, over the 662 a p99 needs to be VALID; 2 s leaves every vision stage INVALID."""
    return Scenario(name="unit", description="", concurrency=(1, 2, 4), warmup_s=0.5,
                    stability_windows=1, max_windows=1, window_s=window_s, cooldown_s=0.5,
                    drain_timeout_s=1.0, sha256="0" * 64, path="unit.yaml")

#: Service times per cell (s); each fake serves 2 requests at once, so its capacity is
#: 2 / service time: digits json: inprocess 4,000, grpc 1,000, flask 500 req/s; digits
#: binary: inprocess 4,000, flask 1,600, grpc 1,250; vision: inprocess 50, flask 44.4,
#: grpc 300 ms (misses the default p99 <= 100 ms objective).
SERVICE = {
    "digits-unit-encoding=json": {"inprocess": 0.0005, "flask": 0.004, "grpc": 0.002},
    "digits-unit-encoding=binary": {"inprocess": 0.0005, "flask": 0.00125, "grpc": 0.0016},
    "vision-unit-encoding=json": {"inprocess": 0.040, "flask": 0.045, "grpc": 0.300},
    "vision-unit-encoding=binary": {"inprocess": 0.040, "flask": 0.045},
}


def simulate(out: Path, services: dict[str, float], window_s: float = 120.0) -> None:
    plan = RunPlan(targets=tuple(services), bundle="digits", scenario=scenario(window_s),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=out)

    def factory(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> FakeTarget:
        return FakeTarget(plan.bundle, name=name, service_time_s=services[name], capacity=2)

    Runner(plan, SimulatedLoadGenerator(), target_factory=factory).run()


def record(index: int, cell_id: str, status: str, **extra: Any) -> CellRecord:
    bundle, scenario, option = cell_id.split("-", 2)
    key, value = option.split("=")
    out: dict[str, Any] = {
        "id": cell_id, "index": index, "bundle": bundle, "bundle_args": ["--bundle", bundle],
        "scenario": scenario, "targets": ["inprocess", "flask", "grpc"],
        "matrix": {key: value}, "options": {key: value}, "argv": [], "dir": f"cells/{cell_id}",
        "status": status, "exit_code": 0 if status == COMPLETE else None,
        "wall_s": 30.0 if status != PENDING else None, "estimated_s": 30.0,
        "attempts": 0 if status == PENDING else 1, **extra}
    result: CellRecord = out  # type: ignore[assignment]
    return result


def manifest(cells: list[CellRecord]) -> SuiteManifest:
    doc: dict[str, Any] = {
        "suite_schema": SUITE_SCHEMA, "name": "unit-suite", "description": "made up for a test",
        "file": "/nowhere/unit-suite.yaml", "suite_hash": "0" * 64, "status": "incomplete",
        "started_at": "2026-12-03T00:00:00+00:00", "finished_at": "2026-12-03T00:03:30+00:00",
        "machine": {"cpu_model": "test CPU", "cpu_count": 2, "memory_gb": 24.0,
                    "label": "test CPU, 2 CPUs, 24 GiB"},
        "deploybench": "0.1.0", "git_commit": "abc1234", "cells": cells}
    result: SuiteManifest = doc  # type: ignore[assignment]
    return result


def write_manifest(suite: Path, cells: list[CellRecord]) -> None:
    (suite / "suite.json").write_text(json.dumps(manifest(cells)))


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two bundles: digits (json, binary) complete; vision json complete, binary partial;
    one failed cell with an empty folder and one pending with none."""
    out = tmp_path_factory.mktemp("suite")
    for cell_id, services in SERVICE.items():
        # The partial cell: cut short, too few requests in every stage (all INVALID).
        simulate(out / "cells" / cell_id, services, 2.0 if cell_id.endswith("binary")
                 and cell_id.startswith("vision") else 120.0)
    (out / "cells" / "digits-unit-encoding=msgpack").mkdir()
    write_manifest(out, [
        record(1, "digits-unit-encoding=json", COMPLETE),
        record(2, "digits-unit-encoding=binary", COMPLETE),
        record(3, "digits-unit-encoding=msgpack", FAILED, exit_code=1,
               error="flask did not start: made up"),
        record(4, "vision-unit-encoding=json", COMPLETE),
        record(5, "vision-unit-encoding=binary", PARTIAL, exit_code=130,
               error="interrupted (Ctrl-C)"),
        record(6, "vision-unit-encoding=zstd", PENDING),
    ])
    return out


@pytest.fixture(scope="module")
def rendered(suite: Path) -> tuple[str, str]:
    md, html = render_suite_dir(suite)
    return md.read_text(), html.read_text()


def section(md: str, start: str, end: str) -> str:
    return md[md.index(start):md.index(end, md.index(start))]


def test_header_counts_cells_and_names_the_machine(rendered: tuple[str, str]) -> None:
    md = rendered[0]
    assert md.startswith("# SIMULATED: deploybench suite: unit-suite")
    assert "6 cells, 3 complete, 1 failed, 1 partial, 1 pending" in md
    assert "test CPU, 2 CPUs, 24 GiB" in md
    assert "commit abc1234" in md
    # 5 cells ran 30 s each; the suite's own clock: 3 min 30 s.
    assert "Wall time: 2m30s in the cells' runs (5 timed)" in md
    assert "last finished 2026-12-03T00:03:30+00:00 (3m30s, with any pause between a stop " \
           "and its resume)" in md
    assert "A cell is one ordinary `deploybench run`" in md


def test_summary_names_the_leader_and_the_model_share(rendered: tuple[str, str]) -> None:
    digits = section(rendered[0], "### `digits`", "### `vision`")
    assert "Leads in capacity within the objective: `inprocess` in 2 of 2 cells" in digits
    assert "4,000 req/s" in digits
    # digits json: in-process 0.5 ms is 25% of grpc's 2 ms (the fastest served one).
    assert "the serving overhead dominates in 2 of 2 cells" in digits
    assert "is 25% of `grpc`'s median (2.00 ms at 1 user)" in digits
    assert digits.count("the model (in-process median 0.500 ms at 1 user)") == 2
    assert "is 40% of `flask`'s median (1.25 ms at 1 user)" in digits
    vision = section(rendered[0], "### `vision`", "## Bundle")
    # vision: 40 ms of flask's 45 ms: 89%.
    assert "the model dominates in 2 of 2 cells" in vision
    assert "is 89% of `flask`'s median (45.0 ms at 1 user)" in vision


def test_summary_weighs_the_option_against_the_deployment(rendered: tuple[str, str]) -> None:
    digits = section(rendered[0], "### `digits`", "### `vision`")
    # flask: 500 -> 1,600 req/s (+220%) with binary; the deployment: flask 500 against
    # grpc 1,000 with json (+100%).
    assert ("`encoding` changes a deployment's capacity by up to 220% (`flask`: 500 req/s "
            "with encoding=json, 1,600 with binary") in digits
    assert "changes it by up to 100% at a fixed encoding (`flask` 500 req/s against `grpc` " \
           "1,000 with encoding=json): the encoding matters more than the deployment." in digits
    assert "one run's (no trials)" in digits
    assert ("For `digits` the serving overhead dominates (the model's median is 25%-40% of "
            "the fastest served deployment's); leads in capacity: `inprocess` in 2 of 2 "
            "cells; best as a service: `grpc` in 1, `flask` in 1 of 2 cells; the encoding "
            "matters more than the deployment.") in digits
    vision = section(rendered[0], "### `vision`", "## Bundle")
    # Only the complete cell met the objective: the encoding's effect cannot be told.
    assert "`encoding`: its effect cannot be told from these cells" in vision
    assert ("INVALID stages (shown, not to be relied on): 1 of 9 in "
            "`vision-unit-encoding=json` (mostly: too few requests for p99), 6 of 6 in "
            "`vision-unit-encoding=binary` (mostly: too few requests for p99).") in vision
    # One cell with VALID stages: the headline is not hedged as from INVALID ones only.
    assert "For `vision` the model dominates" in vision


def test_chosen_and_figures_tables(rendered: tuple[str, str]) -> None:
    md = rendered[0]
    assert "| digits-unit-encoding=json (SIMULATED) | unit | json | inprocess | - | grpc | " \
           "9/9 |" in md
    assert "| digits-unit-encoding=msgpack (FAILED) | unit | msgpack | no run (failed) |" in md
    figures = section(md, "## Bundle `vision`", "![")
    # grpc at 300 ms misses p99 <= 100 ms: said, not a zero.
    assert re.search(r"\| vision-unit-encoding=json \(SIMULATED\) \| grpc \| missed \|", figures)
    assert "| vision-unit-encoding=json (SIMULATED) | flask | 44.4 at 2 users | 45.0 | " \
           "2 concurrent users | 45.0 | $36.04 |" in figures
    # The partial cell's figures are shown from what it measured, marked.
    assert "| vision-unit-encoding=binary (PARTIAL, SIMULATED) | flask | missed | " \
           "45.0 (INVALID) |" in figures


def test_unfinished_cells_listed_without_a_crash(rendered: tuple[str, str]) -> None:
    left = rendered[0][rendered[0].index("## Cells not complete"):]
    assert "| digits-unit-encoding=msgpack | failed | 1 | 1 | flask did not start: made up |" \
        in left
    assert "| vision-unit-encoding=binary | partial | 130 | 1 | interrupted (Ctrl-C) |" in left
    assert "| vision-unit-encoding=zstd | pending | - | 0 | not started yet |" in left


def test_charts_written_linked_and_inlined(suite: Path, rendered: tuple[str, str]) -> None:
    md, html = rendered
    for bundle in ("digits", "vision"):
        png = suite / "charts" / f"suite-{bundle}.png"
        assert png.read_bytes().startswith(PNG)
        assert png.stat().st_size > 10_000
        assert f"](charts/suite-{bundle}.png)" in md
    sources = re.findall(r'src="([^"]+)"', html)
    assert len(sources) == 2
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html) is None


def test_report_links_only_where_a_report_exists(suite: Path) -> None:
    report = suite / "cells" / "digits-unit-encoding=json" / "report.html"
    report.write_text("<html></html>")
    try:
        md, html = (p.read_text() for p in render_suite_dir(suite))
    finally:
        report.unlink()
    assert "[report](cells/digits-unit-encoding=json/report.html)" in md
    assert '<a href="cells/digits-unit-encoding=json/report.html">report</a>' in html
    assert md.count("[report](") == 1


def test_an_unreadable_run_json_is_listed(tmp_path: Path) -> None:
    cell = tmp_path / "cells" / "digits-unit-encoding=json"
    cell.mkdir(parents=True)
    (cell / "run.json").write_text("{not json")
    write_manifest(tmp_path, [record(1, "digits-unit-encoding=json", FAILED, exit_code=1)])
    md = render_suite_dir(tmp_path)[0].read_text()
    assert "is not valid JSON" in md
    assert "no run (failed)" in md
    assert "No cell of it has a run to read." in md


def test_no_manifest_is_a_suite_error(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"no suite\.json"):
        render_suite_dir(tmp_path)


# -- the summary's rules on hand-built runs (tests/unit/runs.py: every figure chosen) ----

def cell(cell_id: str, targets: list[tuple[str, float, float]],
         matrix: dict[str, Any]) -> SuiteCell:
    """A cell whose deployments each ran 1 and 4 users: (name, p50 ms at 1 user, capacity
    req/s at 4 users, p99 well within the objective)."""
    doc = runs.run([runs.target(name, [runs.stage(1, cap / 4, p50, p50 * 2),
                                       runs.stage(4, cap, p50 * 2, p50 * 4)])
                    for name, p50, cap in targets])
    rec = record(1, "d-s-k=v", COMPLETE)
    rec["id"], rec["matrix"] = cell_id, matrix
    return SuiteCell(rec, doc, None, decide(doc), Path("/nowhere"))


def test_the_deployment_can_matter_more_than_the_option() -> None:
    cells = [cell("d-s-encoding=json", [("flask", 2.0, 100.0), ("grpc", 1.0, 400.0)],
                  {"encoding": "json"}),
             cell("d-s-encoding=binary", [("flask", 2.0, 110.0), ("grpc", 1.0, 420.0)],
                  {"encoding": "binary"})]
    text = suitesummary.matrix_item(cells, "encoding")
    # flask 100 -> 110 (+10%); grpc 400 against flask 100 at json (+300%).
    assert "by up to 10% (`flask`: 100 req/s with encoding=json, 110 with binary" in text
    assert "by up to 300% at a fixed encoding (`flask` 100 req/s against `grpc` 400" in text
    assert text.endswith("the deployment matters more than the encoding.")


def test_close_effects_matter_about_as_much_and_lists_are_one_value() -> None:
    cells = [cell("d-s-a", [("flask", 2.0, 100.0), ("grpc", 1.0, 200.0)],
                  {"target_cpus": ["1", "2"]}),
             cell("d-s-b", [("flask", 2.0, 195.0), ("grpc", 1.0, 210.0)],
                  {"target_cpus": ["2", "3"]})]
    text = suitesummary.matrix_item(cells, "target_cpus")
    assert "100 req/s with target_cpus=1,2, 195 with 2,3" in text
    assert text.endswith("the target_cpus and the deployment matter about as much.")


def test_model_share_unknown_without_an_in_process_result() -> None:
    cells = [cell("d-s-x", [("flask", 2.0, 100.0), ("grpc", 1.0, 200.0)], {}),
             cell("d-s-y", [("inprocess", 0.9, 900.0), ("flask", 1.0, 200.0)], {})]
    text = suitesummary.dominance_item(cells)
    assert "unknown in `d-s-x` (no in-process result" in text
    # 0.9 ms of flask's 1.0 ms: the model dominates.
    assert "the model dominates in 1 of 1 cells" in text
    assert "is 90% of `flask`'s median (1.00 ms at 1 user)" in text


def test_many_cells_shares_said_by_their_ends() -> None:
    cells = [cell(f"d-s-{i}", [("inprocess", p50, 900.0), ("flask", 4.0, 200.0)], {})
             for i, p50 in enumerate((0.4, 1.2, 0.8, 1.6))]
    text = suitesummary.dominance_item(cells)
    assert "the serving overhead dominates in 4 of 4 cells" in text
    assert "from the lowest share to the highest, in `d-s-0`" in text
    assert "is 10% of `flask`'s median" in text
    assert "is 40% of `flask`'s median" in text
    assert "`d-s-1`" not in text


def test_an_option_is_weighed_on_the_served_deployments() -> None:
    # in-process varies by 50% between the cells (noise: the encoding does not reach it),
    # flask by 20%: the option's effect is flask's.
    cells = [cell("d-s-j", [("inprocess", 0.1, 20_000.0), ("flask", 1.0, 1_000.0)],
                  {"encoding": "json"}),
             cell("d-s-b", [("inprocess", 0.1, 30_000.0), ("flask", 1.0, 1_200.0)],
                  {"encoding": "binary"})]
    text = suitesummary.matrix_item(cells, "encoding")
    assert "by up to 20% (`flask`: 1,000 req/s with encoding=json, 1,200 with binary" in text
    # One served deployment a cell: the deployment's effect is in-process against it (the
    # largest ratio: 25x with binary).
    assert "more than 10x at a fixed encoding (`flask` 1,200 req/s against `inprocess` " \
           "30,000 with encoding=binary)" in text


def a_cell(cid: str, capacities: dict[str, float]) -> SuiteCell:
    """A cell whose decision holds only these capacities (what the leader is read from)."""
    figures = [SimpleNamespace(name=n, capacity=SimpleNamespace(median=v))
               for n, v in capacities.items()]
    return cast(SuiteCell, SimpleNamespace(id=cid, decision=SimpleNamespace(figures=figures)))


def test_a_lead_within_one_runs_spread_is_a_tie_and_every_leader_is_counted() -> None:
    cells = [a_cell("a", {"flask": 1000.0, "grpc": 1090.0}),  # 9% apart: a tie
             a_cell("b", {"flask": 1000.0, "grpc": 1200.0}),
             a_cell("c", {"flask": 1000.0, "grpc": 1300.0}),
             a_cell("d", {"fastapi": 900.0, "flask": 500.0})]
    assert [suitesummary.leader(c) for c in cells] == [suitesummary.TIED, "grpc", "grpc",
                                                       "fastapi"]
    assert suitesummary.capacity_item(cells) == (
        "Leads in capacity within the objective: `grpc` in 2, a tie (the two highest within "
        "10%) in 1, `fastapi` in 1 of 4 cells where one met it (highest: `grpc`, 1,300 req/s "
        "in `c`).")


def test_an_option_effect_within_one_runs_spread_is_not_claimed() -> None:
    def cell(cid: str, encoding: str, caps: dict[str, float]) -> SuiteCell:
        c = a_cell(cid, caps)
        c.record = {"scenario": "s", "matrix": {"encoding": encoding}}  # type: ignore[misc]
        return c

    cells = [cell("j", "json", {"flask": 1000.0, "grpc": 2000.0}),
             cell("b", "binary", {"flask": 1050.0, "grpc": 2000.0})]
    text = suitesummary.matrix_item(cells, "encoding")
    assert "by up to 5% (`flask`: 1,000 req/s with encoding=json, 1,050 with binary, other " \
           "settings the same), within 10%: no effect can be told from it while" in text
    assert text.endswith("the deployment matters more than the encoding.")


def test_a_deployment_alone_in_its_cell_leads_nothing() -> None:
    cells = [a_cell("f", {"flask": 1000.0}), a_cell("g", {"grpc": 2000.0})]
    assert [suitesummary.leader(c) for c in cells] == [None, None]
    assert suitesummary.capacity_item(cells) == (
        "Leads in capacity: no cell measured two or more deployments side by side: compare "
        "their capacities across cells in the tables below.")


def test_a_bundle_measured_in_invalid_stages_only_says_so_first() -> None:
    share = suitesummary.Share("c", 28.0, "1 user", "grpc", 26.4, "1 user")
    assert share.text().endswith(": the serving overhead is lost in the model's time and "
                                 "the noise")
    fast = suitesummary.Share("c", 1.0, "1 user", "grpc", 4.0, "1 user")
    assert "lost in" not in fast.text()
    doc = runs.run([runs.target(name, [runs.stage(1, 30.0, p50, p50 * 2, valid=False)])
                    for name, p50 in (("inprocess", 28.0), ("grpc", 26.4))])
    rec = record(1, "vision-quick-k=v", COMPLETE)
    invalid = SuiteCell(rec, doc, None, decide(doc), Path("/nowhere"))
    assert invalid.invalid_reason() == "unstable"
    said = suitesummary.headline("vision", [invalid])
    assert said is not None
    assert said.startswith("For `vision` (from INVALID stages only) "), said
