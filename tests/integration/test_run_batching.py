"""`run --targets flask --batching both` as a user runs it: a real Flask server unbatched,
then another with its batcher, real Locust, the batch log read back into each stage, and
the report's "Batching" section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reports.schema import load_run

pytestmark = pytest.mark.integration


def test_flask_measured_unbatched_and_batched(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "flask", "--batching",
         "both,max_batch=8,max_wait_ms=2", "--bundle", "digits", "--scenario", "smoke",
         "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert run["metadata"].get("batching") == "both,max_batch=8,max_wait_ms=2"
    assert [t["name"] for t in run["targets"]] == ["flask", "flask+batch"]
    plain, batched = run["targets"]
    for target in (plain, batched):
        assert target["status"] == "ok", target["error"]
        assert target["parity"] is not None
        assert target["parity"]["ok"]  # the batcher answers as in-process does
        assert target.get("deployment") == "flask"
        assert all(s["rps"] > 0 and s["errors"] == 0 for s in target["stages"])
    assert plain.get("batching") is None
    assert all(s["batching"] is None for s in plain["stages"])
    assert batched.get("batching") == "max_batch=8,max_wait_ms=2"
    for stage in batched["stages"]:
        block = stage["batching"]
        assert block is not None
        assert block["batches"] > 0
        assert block["sizes"]
        # A pass serves 1..max_batch requests; the log's passes served the window's
        # requests, give or take those in flight at its edges (one per user).
        assert all(1 <= int(size) <= 8 for size in block["sizes"])
        assert sum(int(k) * v for k, v in block["sizes"].items()) == block["requests"]
        assert abs(block["requests"] - stage["requests"]) <= 2 * (stage["concurrency"] or 1)
        # Closed loop: a batch never holds more requests than there are users.
        assert max(int(size) for size in block["sizes"]) <= (stage["concurrency"] or 1)
    md = (out / "report.md").read_text()
    assert "## Batching" in md
    assert "### flask+batch" in md
    assert "- **flask+batch** against flask:" in md
    assert (out / "charts" / "batching.png").exists()
    assert "<h2>Batching</h2>" in (out / "report.html").read_text()
