"""Result files: written whole or not at all, and a run cut short is recognisable."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from harness.results import SampleWriter, write_run
from reports import document, markdown
from reports.blocks import Chart
from reports.schema import RunDoc, read_samples
from targets.files import atomic_write_bytes
from tests.unit import runs


def test_an_atomic_write_is_all_or_nothing(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.json"
    atomic_write_bytes(path, b'{"status": "running"}')
    assert path.read_bytes() == b'{"status": "running"}'
    # A write that fails before the rename (a full disk, a kill) leaves the old file
    # whole, and no temporary file behind.
    def no_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(path, b'{"status": "complete", "targets": [...]}')
    assert path.read_bytes() == b'{"status": "running"}'
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_run_json_is_rewritten_whole_each_time(tmp_path: Path) -> None:
    doc = {"status": "running", "targets": []}
    write_run(tmp_path, doc)
    doc["targets"].append({"name": "flask"})
    doc["status"] = "complete"
    write_run(tmp_path, doc)
    assert json.loads((tmp_path / "run.json").read_text()) == doc
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def _append(writer: SampleWriter, target: str, n: int) -> None:
    zeros = np.zeros(n)
    writer.append(target, 0, 1, zeros + 1.0, zeros + 2.0, np.ones(n, bool),
                  np.array(["measure"] * n), np.zeros(n, bool), zeros)


def test_samples_cut_short_by_a_kill_still_read(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv.gz"
    writer = SampleWriter(path)
    _append(writer, "flask", 100)
    whole = path.stat().st_size
    _append(writer, "grpc", 5000)
    # Killed while appending grpc's stage: its gzip member is cut short.
    with path.open("r+b") as fh:
        fh.truncate(whole + (path.stat().st_size - whole) // 2)
    with pytest.raises(EOFError), gzip.open(path, "rt") as fh:  # a plain reader trips
        fh.read()
    samples = read_samples(path)
    targets = list(samples["target"])
    assert targets[:100] == ["flask"] * 100  # every finished stage's rows
    assert len(targets) < 5100
    assert set(targets[100:]) <= {"grpc"}  # and only complete rows of the cut one


@pytest.mark.parametrize(("status", "stopped_by", "says"), [
    ("partial", "it was interrupted (SIGINT) and stopped what it had started",
     "it was interrupted (SIGINT)"),
    ("partial", None, "it stopped early"),
    ("running", None, "its orchestrator ended without finishing"),
])
def test_an_unfinished_run_says_so_first(status: str, stopped_by: str | None,
                                         says: str) -> None:
    run = runs.run([runs.target("flask", [runs.stage(1, 1000.0, 1.0, 2.0)])])
    run["status"] = status
    if stopped_by:
        run["stopped_by"] = stopped_by
    run["metadata"]["targets_requested"] = ["flask", "grpc"]
    text = _markdown(run)
    notice = next(line for line in text.splitlines() if "did not finish" in line)
    assert says in notice
    assert "Not measured: grpc." in notice
    assert text.index("did not finish") < text.index("## Decision")
    complete = runs.run([runs.target("flask", [runs.stage(1, 1000.0, 1.0, 2.0)])])
    assert "did not finish" not in _markdown(complete)


def _markdown(run: RunDoc) -> str:
    blocks = document.build(run)
    return markdown.render(blocks, {b.name: f"{b.name}.png" for b in blocks
                                    if isinstance(b, Chart)})
