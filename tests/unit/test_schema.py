"""Older run.json files load (upgraded in memory) or are refused with what to do."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from reports.render import render_run_dir
from reports.schema import SCHEMA_VERSION, ResultFileError, StageResult, load_run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runs"
V3 = FIXTURES / "digits-v3.json"


def v3_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(V3.read_text())
    return doc


def as_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """What version 2 wrote: the same run without what version 3 added."""
    doc = copy.deepcopy(doc)
    doc["schema_version"] = 2
    doc["scenario"]["duration_s"] = doc["scenario"].pop("window_s")
    for t in doc["targets"]:
        for s in t["stages"]:
            for key in ("valid", "reasons", "windows", "windows_kept", "stable", "mode",
                        "trial", "sweep", "sweep_stop", "open_loop"):
                s.pop(key, None)
            if s["latency_ms"]:
                s["latency_ms"].pop("p999")
    return doc


def as_v1(doc: dict[str, Any]) -> dict[str, Any]:
    doc = as_v2(doc)
    doc["schema_version"] = 1
    doc["metadata"].pop("smt_shared_cores")
    for t in doc["targets"]:
        for s in t["stages"]:
            for key in ("unanswered", "target_peak_rss_mb", "target_processes_changed",
                        "loadgen_cpu_ms_per_request"):
                s.pop(key)
    return doc


def without_batching(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` less what upgrading to version 6 fills (batching None everywhere)."""
    doc = copy.deepcopy(doc)
    assert doc["metadata"].pop("batching") is None
    for t in doc["targets"]:
        assert t.pop("batching") is None
        for s in t["stages"]:
            assert s.pop("batching") is None
    return doc


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    (tmp_path / "run.json").write_text(json.dumps(doc))
    return tmp_path


def test_version_3_loads_and_renders_with_a_caveat(tmp_path: Path) -> None:
    run = load_run(write(tmp_path, v3_doc()))
    assert run["schema_version"] == SCHEMA_VERSION
    assert run["upgraded_from"] == 3
    md = render_run_dir(tmp_path, run).markdown.read_text()
    assert "written by an older deploybench (schema 3)" in md
    assert "## Decision" in md
    # It recorded no always-on prices: the defaults are used and the report says so.
    assert "recorded no always-on prices" in md


@pytest.mark.parametrize(("version", "make"), [(2, as_v2), (1, as_v1)])
def test_versions_before_verdicts_load_as_not_checked(tmp_path: Path, version: int,
                                                      make: Any) -> None:
    run = load_run(write(tmp_path, make(v3_doc())))
    assert run["upgraded_from"] == version
    assert run["scenario"]["window_s"] == 3.0
    stages = [s for t in run["targets"] for s in t["stages"]]
    # Never silently VALID: a verdict that was not made is shown as not made.
    assert not any(s["valid"] for s in stages)
    assert all("before validity verdicts existed" in s["reasons"][0] for s in stages)
    md = render_run_dir(tmp_path, run).markdown.read_text()
    assert f"schema {version}" in md
    # Nothing to rely on: it says so rather than "no deployment met the objective".
    assert "**Cannot decide**: every stage of this run predates validity verdicts" in md


def test_newer_and_unknown_versions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match=r"newer than this deploybench.*that wrote it"):
        load_run(write(tmp_path, {"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ResultFileError, match="not one deploybench ever wrote"):
        load_run(write(tmp_path, {"schema_version": 0}))
    with pytest.raises(ResultFileError, match="not a deploybench result"):
        load_run(write(tmp_path, {"hello": 1}))


def test_upgrade_command_keeps_the_original(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, v3_doc())
    assert main(["upgrade", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "run.v3.json").read_text())["schema_version"] == 3
    upgraded = json.loads((tmp_path / "run.json").read_text())
    assert upgraded["schema_version"] == SCHEMA_VERSION
    assert upgraded["upgraded_from"] == 3
    assert main(["upgrade", str(tmp_path)]) == 0
    assert "nothing to do" in capsys.readouterr().out


# -- version 4 to 5: timeline stages and the encoding's path get their version ----------

#: Written by deploybench under schema 4: digits on four targets (codecs without
#: on_path_ms), and --targets fake under the spike scenario (one timeline stage).
V4 = FIXTURES / "digits-4targets.json"
V4_TIMELINE = FIXTURES / "fake-timeline-v4.json"


def test_version_4_codec_gains_its_path_from_the_server_steps(tmp_path: Path) -> None:
    original = json.loads(V4.read_text())
    assert original["schema_version"] == 4
    run = load_run(write(tmp_path, original))
    assert run["schema_version"] == SCHEMA_VERSION == 6
    assert run["upgraded_from"] == 4
    codecs = {t["name"]: t.get("codec") for t in run["targets"]}
    assert codecs["inprocess"] is None
    served = [c for c in codecs.values() if c is not None]
    assert len(served) == 3
    for codec in served:
        # Before the users decoded answers, the server's two steps were the whole path.
        assert codec["on_path_ms"] == pytest.approx(
            codec["request_decode_ms"] + codec["response_encode_ms"])


def test_a_version_4_codec_that_recorded_its_path_keeps_it(tmp_path: Path) -> None:
    doc = json.loads(V4.read_text())
    flask = next(t for t in doc["targets"] if t["name"] == "flask")
    flask["codec"]["on_path_ms"] = 0.5
    run = load_run(write(tmp_path, doc))
    codec = next(t for t in run["targets"] if t["name"] == "flask").get("codec")
    assert codec is not None
    assert codec["on_path_ms"] == 0.5


def test_version_4_timeline_stage_loads_unchanged_and_renders(tmp_path: Path) -> None:
    original = json.loads(V4_TIMELINE.read_text())
    assert original["schema_version"] == 4
    assert [s["mode"] for t in original["targets"] for s in t["stages"]] == ["timeline"]
    run = load_run(write(tmp_path, copy.deepcopy(original)))
    assert run["upgraded_from"] == 4
    # The timeline stage already had version 5's shape: nothing but the version changes
    # (and version 6's batching, None: nothing was batched).
    unbatched = without_batching(dict(run))
    assert {k: v for k, v in unbatched.items() if k not in ("schema_version", "upgraded_from")} \
        == {k: v for k, v in original.items() if k != "schema_version"}
    [stage] = run["targets"][0]["stages"]
    timeline = stage.get("timeline")
    assert timeline is not None
    assert [g["label"] for g in timeline["segments"]] == ["baseline", "burst", "after"]
    assert len(timeline["series"]) == timeline_points(stage)
    md = render_run_dir(tmp_path, run).markdown.read_text()
    assert "## Timeline" in md
    assert "written by an older deploybench (schema 4)" in md


def timeline_points(stage: StageResult) -> int:
    """One point of the series per sample_s of the measured timeline."""
    timeline = stage.get("timeline")
    assert timeline is not None
    return round(stage["duration_s"] / timeline["sample_s"])


def test_upgrade_command_brings_a_version_4_timeline_run_to_6(tmp_path: Path) -> None:
    original = json.loads(V4_TIMELINE.read_text())
    write(tmp_path, original)
    assert main(["upgrade", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "run.v4.json").read_text()) == original
    upgraded = json.loads((tmp_path / "run.json").read_text())
    assert (upgraded["schema_version"], upgraded["upgraded_from"]) == (6, 4)
    assert without_batching(upgraded)["targets"] == original["targets"]


def test_version_5_gains_batching_none_and_keeps_the_rest(tmp_path: Path) -> None:
    """Nothing was batched before version 6: every stage's, target's and the run's
    ``batching`` is None, and nothing else changes."""
    original = load_run(write(tmp_path, json.loads(V4.read_text())))
    as_v5: dict[str, Any] = without_batching(dict(original))
    as_v5["schema_version"] = 5
    del as_v5["upgraded_from"]
    run = load_run(write(tmp_path, copy.deepcopy(as_v5)))
    assert (run["schema_version"], run["upgraded_from"]) == (6, 5)
    assert run["metadata"].get("batching", "absent") is None
    assert all(t.get("batching", "absent") is None for t in run["targets"])
    assert all(s["batching"] is None for t in run["targets"] for s in t["stages"])
    assert without_batching(dict(run)) == {**as_v5, "schema_version": 6, "upgraded_from": 5}


def test_compare_reads_a_version_4_run_against_its_upgrade(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    write(old, json.loads(V4.read_text()))
    write(new, json.loads(V4.read_text()))
    assert main(["upgrade", str(new)]) == 0
    capsys.readouterr()
    assert main(["compare", str(old), str(new)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith(("inprocess ", "flask ", "grpc ", "lambda "))]
    # The same measurements, read at two versions: every stage matched, nothing moved.
    assert {r[0] for r in rows} == {"inprocess", "flask", "grpc", "lambda"}
    assert all("+0.0%" in r or "+0.00" in r for r in rows)
