"""A suite folder resumed from what is on disk: complete cells skipped whatever the
manifest says, the others re-run after their old folder is moved aside, a folder of
another suite refused. Cells are run by a stand-in for ``deploybench run`` that copies a
prepared run.json, so the decisions are tested without a server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from harness.suites.runner import (
    SuiteRun,
    cell_outcome,
    locked,
    move_aside,
    new_manifest,
    open_suite_dir,
    write_manifest,
)
from harness.suites.spec import Suite, load_suite
from reports.schema import RunDoc
from reports.suiteschema import (
    COMPLETE,
    FAILED,
    PARTIAL,
    PENDING,
    RUNNING,
    SuiteError,
    SuiteManifest,
    load_manifest,
    machine_class,
)
from tests.unit import runs

#: Copies the run.json named by the cell's --encoding (json: complete, binary: failed)
#: into --out, and exits 1 for a failed one, as `deploybench run` does.
FAKE_RUN = """\
import shutil, sys
from pathlib import Path
argv = sys.argv[2:]
kind = next(a.split("=", 1)[1] for a in argv if a.startswith("--encoding="))
out = Path(argv[argv.index("--out") + 1])
out.mkdir(parents=True)
shutil.copy(Path(sys.argv[1]) / f"{kind}.json", out / "run.json")
if kind != "json":
    print("error: made up for a test", file=sys.stderr)
    sys.exit(1)
"""

SUITE = """\
bundles: [digits]
targets: [flask]
scenarios: [smoke]
matrix:
  encoding: [json, binary]
  trials: [1, 2]
"""


def a_run(status: str = "complete", target_status: str = "ok") -> RunDoc:
    doc = runs.run([runs.target("flask", [runs.stage(1, 100.0, 1.0, 2.0)],
                                status=target_status,
                                error=None if target_status == "ok" else "it died")])
    doc["status"] = status
    if status != "complete":
        doc["stopped_by"] = "it was interrupted (SIGINT)"
    return doc


def put(cell_dir: Path, doc: RunDoc) -> None:
    cell_dir.mkdir(parents=True)
    (cell_dir / "run.json").write_text(json.dumps(doc))


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    file = tmp_path / "s.yaml"
    file.write_text(SUITE)
    return load_suite(str(file))


def manifest(suite: Suite) -> SuiteManifest:
    return new_manifest(suite, machine_class({"cpu_model": "test", "cpu_count": 2}), "0.1.0",
                        None)


def fake_run(tmp_path: Path) -> tuple[str, ...]:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "json.json").write_text(json.dumps(a_run()))
    (runs_dir / "binary.json").write_text(json.dumps(a_run(target_status="failed")))
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    return (sys.executable, str(script), str(runs_dir))


def test_a_cells_outcome_is_read_from_its_run_json(tmp_path: Path) -> None:
    assert cell_outcome(tmp_path / "none") == (None, None)
    put(tmp_path / "ok", a_run())
    assert cell_outcome(tmp_path / "ok") == (COMPLETE, None)
    put(tmp_path / "failed", a_run(target_status="failed"))
    assert cell_outcome(tmp_path / "failed") == (FAILED, "flask: it died")
    put(tmp_path / "partial", a_run(status="partial", target_status="failed"))
    status, why = cell_outcome(tmp_path / "partial")
    assert status == PARTIAL
    assert why == "it was interrupted (SIGINT); flask: it died"
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "run.json").write_text("{")
    assert cell_outcome(tmp_path / "garbled")[0] == FAILED


def test_an_earlier_attempt_is_moved_aside_numbered(tmp_path: Path) -> None:
    assert move_aside(tmp_path, "c") is None
    for n in (1, 2):
        put(tmp_path / "cells" / "c", a_run(status="partial"))
        assert move_aside(tmp_path, "c") == tmp_path / "attempts" / f"c-{n}"
        assert (tmp_path / "attempts" / f"c-{n}" / "run.json").exists()
    assert not (tmp_path / "cells" / "c").exists()


def test_a_folder_of_another_suite_is_refused(tmp_path: Path, suite: Suite) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old = manifest(suite)
    old["suite_hash"] = "f" * 64
    write_manifest(out, old)
    with pytest.raises(SuiteError, match=f"its hash is {'f' * 64}, .*'s is "
                                         f"{suite.suite_hash}. Give a new --out"):
        open_suite_dir(out, suite, lambda: manifest(suite))


def test_a_folder_that_is_not_a_suites_is_refused(tmp_path: Path, suite: Suite) -> None:
    (tmp_path / "somefile").write_text("x")
    with pytest.raises(SuiteError, match="not a suite folder"):
        open_suite_dir(tmp_path, suite, lambda: manifest(suite))
    fresh, resumed = open_suite_dir(tmp_path / "new", suite, lambda: manifest(suite))
    assert not resumed
    assert fresh["status"] == RUNNING


def test_resuming_skips_what_disk_says_is_complete_and_reruns_the_rest(
        tmp_path: Path, suite: Suite) -> None:
    out = tmp_path / "out"
    ids = [c["id"] for c in suite.cells]
    assert ids == ["digits-smoke-encoding=json-trials=1", "digits-smoke-encoding=json-trials=2",
                   "digits-smoke-encoding=binary-trials=1",
                   "digits-smoke-encoding=binary-trials=2"]
    # As a suite killed with SIGKILL leaves it: the manifest never heard that cell 1
    # finished, cell 2 was cut short.
    first = manifest(suite)
    first["cells"][0]["attempts"] = first["cells"][1]["attempts"] = 1
    out.mkdir()
    write_manifest(out, first)
    put(out / "cells" / ids[0], a_run())
    put(out / "cells" / ids[1], a_run(status="partial", target_status="failed"))
    kept = (out / "cells" / ids[0] / "run.json").stat().st_mtime_ns

    resumed, was = open_suite_dir(out, suite, lambda: manifest(suite))
    assert was
    run = SuiteRun(suite=suite, out=out, manifest=resumed, resume_command="again",
                   run_command=fake_run(tmp_path))
    run.run_cells()

    cells = {c["id"]: c for c in load_manifest(out)["cells"]}
    assert (out / "cells" / ids[0] / "run.json").stat().st_mtime_ns == kept
    assert cells[ids[0]]["status"] == COMPLETE
    assert cells[ids[0]]["attempts"] == 1
    assert cells[ids[1]]["status"] == COMPLETE
    assert cells[ids[1]]["attempts"] == 2
    assert cells[ids[1]]["exit_code"] == 0
    assert json.loads((out / "attempts" / f"{ids[1]}-1" / "run.json").read_text())[
        "status"] == "partial"
    # A failing cell is marked failed with its error, and the suite goes on to the next.
    for cid in ids[2:]:
        assert cells[cid]["status"] == FAILED
        assert cells[cid]["exit_code"] == 1
        assert cells[cid]["error"] == "flask: it died"
        assert cells[cid]["attempts"] == 1
    assert run.progress.cells_run == ids[1:]
    assert run.progress.interrupted is None


def test_a_cell_that_wrote_no_run_json_is_failed_with_its_exit_code(tmp_path: Path,
                                                                 suite: Suite) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import sys\nprint('note: starting', file=sys.stderr)\n"
                      "print('error: no such thing (x). Fix it', file=sys.stderr)\n"
                      "sys.exit(1)\n")
    out = tmp_path / "out"
    out.mkdir()
    run = SuiteRun(suite=suite, out=out, manifest=manifest(suite), resume_command="again",
                   run_command=(sys.executable, str(script)))
    run.run_cells()
    cells = load_manifest(out)["cells"]
    assert {c["status"] for c in cells} == {FAILED}
    assert cells[0]["exit_code"] == 1
    assert cells[0]["error"] == "exit code 1 and no run.json: its error is in the output above"


def test_a_folder_whose_cells_ran_on_another_machine_is_refused(tmp_path: Path,
                                                                suite: Suite) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write_manifest(out, new_manifest(suite, machine_class({"cpu_model": "other", "cpu_count": 64}),
                                     "0.1.0", None))
    with pytest.raises(SuiteError, match=r"ran on another machine \(other, 64 CPUs, \? GiB\); "
                                         r"this one is test, 2 CPUs, \? GiB. Give a new --out"):
        open_suite_dir(out, suite, lambda: manifest(suite))


def test_a_cell_the_manifest_calls_complete_is_not_once_its_run_json_is_gone(
        tmp_path: Path, suite: Suite) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old = manifest(suite)
    for cell in old["cells"]:
        cell["status"] = COMPLETE
    write_manifest(out, old)
    resumed, _ = open_suite_dir(out, suite, lambda: manifest(suite))
    # Stopped (as by a signal) before the first cell is run again.
    run = SuiteRun(suite=suite, out=out, manifest=resumed, resume_command="again",
                   run_command=fake_run(tmp_path))
    run._run_one = lambda cell: setattr(run.progress, "interrupted", 2)  # type: ignore[method-assign]
    run.run_cells()
    assert {c["status"] for c in load_manifest(out)["cells"]} == {PENDING}


def test_a_second_suite_in_a_running_suites_folder_is_refused(tmp_path: Path,
                                                              suite: Suite) -> None:
    out = tmp_path / "out"
    with locked(out):
        held = rf"another deploybench suite \(PID {os.getpid()}\) is running in {out}: wait"
        with pytest.raises(SuiteError, match=held), locked(out):
            pass
        # The lock file does not make a new folder look like someone else's.
        assert not open_suite_dir(out, suite, lambda: manifest(suite))[1]
    with locked(out):  # released when its holder ends
        pass


@pytest.mark.parametrize("code", [4, 1])
def test_a_strict_run_with_invalid_stages_is_complete_as_a_resume_finds_it(
        tmp_path: Path, suite: Suite, code: int) -> None:
    # `run --strict` writes a complete run.json and exits 4 for INVALID stages: the cell is
    # complete (a resume reads the same from disk and skips it), its code said. So is a
    # run that failed after its run.json (its report): the files decide, as on a resume.
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "done.json").write_text(json.dumps(a_run()))
    script = tmp_path / "strict_run.py"
    script.write_text("import shutil, sys\nfrom pathlib import Path\n"
                      "out = Path(sys.argv[sys.argv.index('--out') + 1])\n"
                      "out.mkdir(parents=True)\n"
                      "shutil.copy(Path(sys.argv[1]) / 'done.json', out / 'run.json')\n"
                      f"sys.exit({code})\n")
    out = tmp_path / "out"
    out.mkdir()
    run = SuiteRun(suite=suite, out=out, manifest=manifest(suite), resume_command="again",
                   run_command=(sys.executable, str(script), str(runs_dir)))
    run.run_cells()
    cells = load_manifest(out)["cells"]
    assert {c["status"] for c in cells} == {COMPLETE}
    assert cells[0]["exit_code"] == code
    assert cells[0]["error"] == ("exit code 4: INVALID stages (--strict)" if code == 4 else
                                 "exit code 1 after its run.json was complete (see the output "
                                 f"above; `deploybench report {out / cells[0]['dir']}` redraws "
                                 "the report)")
