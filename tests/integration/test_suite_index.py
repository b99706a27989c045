"""The suite index over real runs: two smoke cells (in-process and Flask on digits, the
request encoding json against binary) run with `deploybench run`, a manifest written by
hand as `deploybench suite` writes it, and the index rendered from them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reports.suiteindex import render_suite_dir
from reports.suiteschema import COMPLETE, SUITE_SCHEMA

pytestmark = pytest.mark.integration

ENCODINGS = ("json", "binary")


def test_index_of_two_real_cells(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    cells = []
    for index, encoding in enumerate(ENCODINGS, 1):
        cell_id = f"digits-smoke-encoding={encoding}"
        argv = ["--bundle", "digits", "--scenario", "smoke", "--targets", "inprocess,flask",
                "--encoding", encoding]
        done = subprocess.run([sys.executable, "-m", "harness", "run", *argv,
                               "--out", str(suite / "cells" / cell_id)],
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        cells.append({
            "id": cell_id, "index": index, "bundle": "digits",
            "bundle_args": ["--bundle", "digits"], "scenario": "smoke",
            "targets": ["inprocess", "flask"], "matrix": {"encoding": encoding},
            "options": {"encoding": encoding}, "argv": argv, "dir": f"cells/{cell_id}",
            "status": COMPLETE, "exit_code": 0, "wall_s": 20.0, "estimated_s": 20.0,
            "attempts": 1})
    (suite / "suite.json").write_text(json.dumps({
        "suite_schema": SUITE_SCHEMA, "name": "two-cells", "description": "",
        "file": str(tmp_path / "two-cells.yaml"), "suite_hash": "0" * 64,
        "status": COMPLETE, "started_at": "2026-12-03T00:00:00+00:00",
        "finished_at": "2026-12-03T00:01:00+00:00",
        "machine": {"cpu_model": None, "cpu_count": None, "memory_gb": None,
                    "label": "unknown CPU, ? CPUs, ? GiB"},
        "deploybench": "test", "git_commit": None, "cells": cells}))

    md_path, html_path = render_suite_dir(suite)
    md, html = md_path.read_text(), html_path.read_text()
    for encoding in ENCODINGS:
        cell_id = f"digits-smoke-encoding={encoding}"
        assert f"| {cell_id} | smoke | {encoding} |" in md
        assert f"[report](cells/{cell_id}/report.html)" in md
        assert cell_id in html
    # Real runs: not simulated; both deployments in the figures table.
    assert "SIMULATED" not in md
    assert re.search(r"\| digits-smoke-encoding=json \| flask \|", md)
    # The model's share is read from the in-process median beside flask's.
    assert "of `flask`'s median" in md
    assert (suite / "charts" / "suite-digits.png").stat().st_size > 10_000
    assert "](charts/suite-digits.png)" in md
    assert html.count('src="data:image/png;base64,') == 1
