"""A suite's history over real runs: one suite file run twice by `deploybench suite` (one
in-process cell), the second time with a slowdown planted in the model (its bundle's predict
sleeps 5 ms), each run adding its entry to one history; `deploybench history` draws the trend and
flags the slowdown, and its gate fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands import EXIT_REGRESSION
from reports.suiteschema import load_entry

pytestmark = pytest.mark.integration

CELL = "sleepy-smoke"
#: The planted slowdown: far beyond the in-process model's ~0.1 ms, and short enough
#: that the smoke scenario still measures hundreds of requests a stage.
SLOW_S = 0.005


def _bundle(folder: Path, sleep_s: float) -> Path:
    """deploybench init-bundle's example as ``folder``/sleepy.py, its predict sleeping
    ``sleep_s`` first (rewritten in place: the suite file names the same path each time)."""
    scratch = folder / f"template-{sleep_s}"
    subprocess.run([sys.executable, "-m", "harness", "init-bundle", "sleepy", "--dir",
                    str(scratch)], check=True, capture_output=True, timeout=60)
    text = (scratch / "sleepy.py").read_text()
    step = "        out: torch.Tensor = self.net(inputs)\n"
    assert step in text, "the template's predict changed: update this test's edit"
    text = text.replace(step, f"        time.sleep({sleep_s!r})\n{step}")
    text = text.replace("import hashlib\n", "import hashlib\nimport time\n", 1)
    path = folder / "sleepy.py"
    path.write_text(text)
    return path


def _suite(suite_file: Path, out: Path, hdir: Path) -> None:
    """`deploybench suite` over the suite file, adding its entry to ``hdir``."""
    done = subprocess.run(
        [sys.executable, "-m", "harness", "suite", str(suite_file), "--out", str(out),
         "--history", str(hdir)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_slowdown_between_two_suite_runs_is_flagged(tmp_path: Path) -> None:
    hdir = tmp_path / "history"
    folder = tmp_path / "bundle"
    folder.mkdir()
    suite_file = folder / "suite.yaml"
    suite_file.write_text("name: sleepy\nbundles: [./sleepy.py]\ntargets: [inprocess]\n"
                          "scenarios: [smoke]\n")
    for i, sleep_s in enumerate((0.0, SLOW_S)):
        _bundle(folder, sleep_s)
        _suite(suite_file, tmp_path / f"suite{i}", hdir)
    entries = sorted(p for p in hdir.iterdir() if (p / "entry.json").exists())
    assert len(entries) == 2
    for entry in entries:
        assert [c["id"] for c in load_entry(entry)["cells"]] == [CELL]

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
