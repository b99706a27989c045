"""``deploybench suite`` end to end: a 2-bundle x 2-target smoke suite completes; one
interrupted in its second cell resumes, skipping the first; a suite file with a bad key
fails before any cell starts, naming the cell and the key."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reports.schema import load_run
from reports.suiteschema import load_manifest
from tests.integration.processes import alive, descendants

pytestmark = pytest.mark.integration

#: A user bundle of a fixed 2 ms CPU cost per call: the second, tiny model beside digits.
TINY_BUNDLE = Path(__file__).resolve().parent.parent / "fixtures" / "bundles" / \
    "fixed_service.py"


def write_suite(tmp_path: Path, targets: str, extra: str = "") -> Path:
    file = tmp_path / "suite.yaml"
    file.write_text(f"# a test suite\nname: pair\nbundles: [digits, {TINY_BUNDLE}]\n"
                    f"targets: [{targets}]\nscenarios: [smoke]\n{extra}")
    return file


def start(file: Path, out: Path, err: Path) -> subprocess.Popen[bytes]:
    with err.open("ab") as stream:
        return subprocess.Popen([sys.executable, "-m", "harness", "suite", str(file),
                                 "--out", str(out), "--no-history"],
                                stdout=subprocess.DEVNULL, stderr=stream)


def complete(cell_dir: Path) -> bool:
    run = load_run(cell_dir)
    return run["status"] == "complete" and all(t["status"] == "ok" for t in run["targets"])


def test_a_two_bundle_two_target_suite_completes(tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "stderr.txt"
    proc = start(write_suite(tmp_path, "inprocess, flask"), out, err)
    assert proc.wait(timeout=400) == 0, err.read_text()[-3000:]
    stderr = err.read_text()
    manifest = load_manifest(out)
    assert manifest["status"] == "complete"
    assert manifest["name"] == "pair"
    ids = [c["id"] for c in manifest["cells"]]
    assert ids == ["digits-smoke", "fixed_service-smoke"]
    for cell in manifest["cells"]:
        assert cell["status"] == "complete"
        assert cell["attempts"] == 1
        assert cell["exit_code"] == 0
        assert cell["wall_s"] is not None
        assert complete(out / cell["dir"])
        assert [t["name"] for t in load_run(out / cell["dir"])["targets"]] == \
            ["inprocess", "flask"]
    assert "suite pair: cell 1 of 2: digits-smoke - about" in stderr
    assert "suite pair: cell 2 of 2: fixed_service-smoke - about" in stderr
    assert "suite pair: 2 of 2 cells complete" in stderr
    assert (out / "suite.md").exists(), stderr[-2000:]
    assert (out / "suite.html").exists()


def test_an_interrupted_suite_resumes_where_it_stopped(tmp_path: Path) -> None:
    file = write_suite(tmp_path, "inprocess")
    out, err = tmp_path / "out", tmp_path / "stderr.txt"
    first_id, second_id = "digits-smoke", "fixed_service-smoke"
    proc = start(file, out, err)
    seen = {}
    try:
        deadline = time.monotonic() + 240
        # Until the first cell is complete and the second's run has its folder.
        while not ((out / "cells" / first_id / "run.json").exists()
                   and (out / "cells" / second_id / "run.json").exists()):
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            assert proc.poll() is None, err.read_text()[-3000:]
            seen.update({p.pid: p for p in descendants(proc.pid)})
            time.sleep(0.2)
        time.sleep(2)  # into the second cell's load
        seen.update({p.pid: p for p in descendants(proc.pid)})
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 128 + signal.SIGINT, err.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.read_text()
    assert f"Resume with: deploybench suite {file} --out {out} --no-history" in stderr
    deadline = time.monotonic() + 30
    while alive(list(seen.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(list(seen.values()))
    manifest = load_manifest(out)
    assert manifest["status"] == "interrupted"
    first, second = manifest["cells"]
    assert first["status"] == "complete"
    assert second["status"] == "partial"
    assert load_run(out / "cells" / second_id)["status"] == "partial"
    kept = (out / "cells" / first_id / "run.json").stat().st_mtime_ns

    proc = start(file, out, err)
    assert proc.wait(timeout=300) == 0, err.read_text()[-3000:]
    assert "cell 2 of 2: fixed_service-smoke (skipped 1 complete)" in err.read_text()
    manifest = load_manifest(out)
    assert manifest["status"] == "complete"
    first, second = manifest["cells"]
    assert (out / "cells" / first_id / "run.json").stat().st_mtime_ns == kept
    assert first["attempts"] == 1
    assert second["attempts"] == 2
    assert complete(out / "cells" / second_id)
    attempt = out / "attempts" / f"{second_id}-1"
    assert json.loads((attempt / "run.json").read_text())["status"] == "partial"


def test_a_bad_key_fails_before_any_cell_starts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for extra, named in (
            ("matrix:\n  encoding: [json, xml]\n",
             ": cell digits-smoke-encoding=xml: matrix.encoding: argument --encoding: "
             "invalid choice: 'xml'"),
            ("matrix:\n  encodng: [json]\n",
             ": matrix.encodng: not an option of deploybench run; did you mean 'encoding'?")):
        file = write_suite(tmp_path, "inprocess, flask", extra)
        done = subprocess.run([sys.executable, "-m", "harness", "suite", str(file), "--out",
                               str(out), "--no-history"], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"error: {file}{named}"), done.stderr
        assert not out.exists()
