"""`run --encodings json,binary` as a user runs it: one real Flask server per encoding,
real Locust, and the report's "Payload encodings" section."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reports.schema import load_run, read_samples

pytestmark = pytest.mark.integration


def test_flask_measured_once_per_encoding(tmp_path: Path) -> None:
    out = tmp_path / "enc"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "flask", "--encodings",
         "json,binary", "--bundle", "digits", "--scenario", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert run["metadata"]["encodings"] == ["json", "binary"]
    # The CPUs the machine gave the run, not the orchestrator's after it pinned itself.
    assert run["metadata"]["cpus_allowed"] == sorted(os.sched_getaffinity(0))
    assert run["metadata"]["lambda_platform_init_ms"] == 50.0  # the documented default
    assert [t["name"] for t in run["targets"]] == ["flask-json", "flask-binary"]
    sizes = {}
    for target, wire in zip(run["targets"], ("json", "binary"), strict=True):
        assert target["status"] == "ok", target["error"]
        assert target["parity"] is not None
        assert target["parity"]["ok"]
        assert (target.get("deployment"), target.get("encoding")) == ("flask", wire)
        assert target["describe"]["encoding"] == wire
        codec = target.get("codec") or {}
        assert codec["encoding"] == wire
        sizes[wire] = codec["request_bytes"]
        assert all(s["rps"] > 0 and s["errors"] == 0 for s in target["stages"])
        # Each result has its own server log: none appended to the other's.
        assert (out / "logs" / f"{target['name']}.log").stat().st_size > 0
    assert sizes["binary"] == 64 * 4  # digits: 64 float32 pixels
    assert sizes["json"] > sizes["binary"]
    assert set(read_samples(out)["target"]) == {"flask-json", "flask-binary"}
    md = (out / "report.md").read_text()
    assert "## Payload encodings" in md
    assert "- **flask**: binary requests are" in md
    assert (out / "charts" / "encodings.png").exists()
    assert "<h2>Payload encodings</h2>" in (out / "report.html").read_text()
