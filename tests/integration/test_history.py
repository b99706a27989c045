"""A suite's history over real runs: two suite folders of one in-process cell, the second
with a slowdown planted in the model (a bundle whose predict sleeps 5 ms), appended to one
history; `deploybench history` draws the trend and flags the slowdown, and its gate fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands import EXIT_REGRESSION
from harness.suites.history import append_entry
from reports.suiteschema import COMPLETE, load_entry
from tests.suitefolders import write_manifest

pytestmark = pytest.mark.integration

CELL = "sleepy-smoke"
#: The planted slowdown: far beyond the in-process model's ~0.1 ms, and short enough
#: that the smoke scenario still measures hundreds of requests a stage.
SLOW_S = 0.005


def _bundle(folder: Path, sleep_s: float) -> Path:
    """deploybench init-bundle's example, its predict sleeping ``sleep_s`` first."""
    folder.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "harness", "init-bundle", "sleepy", "--dir",
                    str(folder)], check=True, capture_output=True, timeout=60)
    path = folder / "sleepy.py"
    text = path.read_text()
    step = "        out: torch.Tensor = self.net(inputs)\n"
    assert step in text, "the template's predict changed: update this test's edit"
    text = text.replace(step, f"        time.sleep({sleep_s!r})\n{step}")
    text = text.replace("import hashlib\n", "import hashlib\nimport time\n", 1)
    path.write_text(text)
    return path


def _suite_folder(suite_dir: Path, bundle_file: Path) -> Path:
    """A suite folder of one cell (the bundle on inprocess, smoke), as `deploybench suite`
    writes it: the cell's ordinary run in cells/CELL and the manifest. The suite command
    can stand in here (with --no-history: the test appends itself)."""
    run_dir = suite_dir / "cells" / CELL
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "inprocess", "--scenario",
         "smoke", "--bundle", str(bundle_file), "--out", str(run_dir)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    write_manifest(suite_dir, {CELL: COMPLETE}, name="sleepy", finished_at=None,
                   bundle="sleepy")
    return suite_dir


def test_a_slowdown_between_two_suite_runs_is_flagged(tmp_path: Path) -> None:
    hdir = tmp_path / "history"
    for i, sleep_s in enumerate((0.0, SLOW_S)):
        suite_dir = _suite_folder(tmp_path / f"suite{i}", _bundle(tmp_path / f"b{i}", sleep_s))
        entry = append_entry(suite_dir, hdir)
        assert entry is not None
        assert [c["id"] for c in load_entry(entry)["cells"]] == [CELL]
    assert len([p for p in hdir.iterdir() if (p / "entry.json").exists()]) == 2

    done = subprocess.run([sys.executable, "-m", "harness", "history", str(hdir)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (hdir / "charts" / f"trend-{CELL}-p99.png").stat().st_size > 1000
    assert "data:image/png;base64," in (hdir / "history.html").read_text()
    worse = [ln for ln in done.stdout.splitlines() if "worse:" in ln]
    assert any("inprocess at 1 user p50" in ln for ln in worse), done.stdout
    assert "worse beyond spread (untested)" in (hdir / "history.md").read_text()

    gated = subprocess.run([sys.executable, "-m", "harness", "history", str(hdir),
                            "--fail-on", "p50:+20%"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert gated.returncode == EXIT_REGRESSION, gated.stdout + gated.stderr[-3000:]
    assert f"{CELL}: inprocess at 1 user p50" in gated.stdout.split("FAIL")[1]
