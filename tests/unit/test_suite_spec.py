"""A suite file, loaded and checked whole: its cells, their ids and order, the errors that
name the file, the cell and the key, and the suite hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.suites.spec import (
    COLD_START_S,
    REDEPLOY_S,
    RESULT_OVERHEAD_S,
    RUN_OVERHEAD_S,
    cell_id,
    load_suite,
    suite_file,
)
from reports.suiteschema import PENDING, SuiteError
from scenarios import catalogue

BASE = """\
bundles: [digits, 'null']
targets: [inprocess]
scenarios: [smoke]
"""


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    file = tmp_path / name
    file.write_text(text)
    return file


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SuiteError) as caught:
        load_suite(str(write(tmp_path, text)))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'mine.yaml'}: ")
    return message


def test_cells_are_bundles_by_scenarios_by_matrix_in_the_files_order(tmp_path: Path) -> None:
    suite = load_suite(str(write(tmp_path, BASE + "matrix:\n  trials: [1, 2]\n"
                                            "  target_cpus: ['1', '0']\n")))
    assert suite.name == "mine"
    assert [c["id"] for c in suite.cells] == [
        "digits-smoke-trials=1-target-cpus=1", "digits-smoke-trials=1-target-cpus=0",
        "digits-smoke-trials=2-target-cpus=1", "digits-smoke-trials=2-target-cpus=0",
        "null-smoke-trials=1-target-cpus=1", "null-smoke-trials=1-target-cpus=0",
        "null-smoke-trials=2-target-cpus=1", "null-smoke-trials=2-target-cpus=0"]
    first = suite.cells[0]
    assert first["index"] == 1
    assert suite.cells[-1]["index"] == 8
    assert first["argv"] == ["--bundle=digits", "--scenario=smoke", "--targets=inprocess",
                             "--trials=1", "--target-cpus=1"]
    assert first["matrix"] == {"trials": 1, "target_cpus": "1"}
    assert first["options"] == {"targets": ["inprocess"], "trials": 1, "target_cpus": "1"}
    assert first["targets"] == ["inprocess"]
    assert first["dir"] == "cells/digits-smoke-trials=1-target-cpus=1"
    assert (first["status"], first["attempts"], first["exit_code"]) == (PENDING, 0, None)


def test_estimate_is_load_times_results_times_trials_plus_start_up(tmp_path: Path) -> None:
    suite = load_suite(str(write(tmp_path, "bundles: [digits]\nscenarios: [smoke]\n"
                                           "targets: [inprocess, flask]\n"
                                           "options: {trials: 2}\n")))
    load = catalogue.load("smoke").estimated_s
    [cell] = suite.cells
    assert cell["estimated_s"] == pytest.approx(load * 2 * 2 + RUN_OVERHEAD_S
                                                + 2 * RESULT_OVERHEAD_S, abs=0.1)
    assert suite.estimated_s == cell["estimated_s"]
    # quick measures 3 cold starts and 1 redeploy of each result: they are counted.
    quick = load_suite(str(write(tmp_path, "bundles: [digits]\nscenarios: [quick]\n"
                                           "targets: [inprocess, flask]\n", "q.yaml")))
    scenario = catalogue.load("quick")
    assert quick.cells[0]["estimated_s"] == pytest.approx(
        scenario.estimated_s * 2 + RUN_OVERHEAD_S
        + 2 * (RESULT_OVERHEAD_S + 3 * COLD_START_S + REDEPLOY_S), abs=0.1)


def test_an_option_list_is_joined_and_a_flag_takes_a_boolean(tmp_path: Path) -> None:
    suite = load_suite(str(write(tmp_path, BASE.replace("[inprocess]", "[inprocess, flask]")
                                 + "options:\n  encodings: [json, binary]\n"
                                   "  strict: true\n  metrics: false\n")))
    argv = suite.cells[0]["argv"]
    assert "--encodings=json,binary" in argv
    assert "--strict" in argv
    assert not any(a.startswith("--metrics") for a in argv)


def test_ids_are_safe_for_a_folder() -> None:
    assert cell_id("digits", "smoke", [("slo", "p99=50 ms/x")]) == "digits-smoke-slo=p99=50_ms_x"
    assert cell_id("v", "quick", [("encodings", ["json", "binary"]), ("metrics", True)]) \
        == "v-quick-encodings=json,binary-metrics=true"


def test_bundle_files_are_relative_to_the_suite_file(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tiny.py").write_text("# a bundle\n")
    suite = load_suite(str(write(tmp_path, BASE.replace("'null'", "./b/tiny.py"))))
    assert suite.cells[1]["id"] == "tiny-smoke"
    assert suite.cells[1]["bundle_args"] == [f"--bundle={tmp_path / 'b' / 'tiny.py'}"]


def test_two_cells_with_one_id_are_refused(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "tiny.py").write_text("# a bundle\n")
    message = error(tmp_path, BASE.replace("digits, 'null'", "a/tiny.py, b/tiny.py"))
    assert "cell tiny-smoke: two cells would share this id" in message


@pytest.mark.parametrize(("extra", "where", "what"), [
    ("bundle: [vision]\n", "bundle", "did you mean 'bundles'?"),
    ("options:\n  encodng: json\n", "options.encodng", "did you mean 'encoding'?"),
    ("matrix:\n  trails: [1, 2]\n", "matrix.trails", "did you mean 'trials'?"),
    ("options:\n  out: here\n", "options.out", "not allowed in a suite"),
    ("options:\n  bundle: vision\n", "options.bundle", "not allowed in a suite"),
    ("options:\n  model: m.pt2\n", "options.model", "not allowed in a suite"),
    ("options:\n  handler: h.py\n", "options.handler", "not allowed in a suite"),
    ("options:\n  input_shape: '64'\n", "options.input_shape", "not allowed in a suite"),
    ("matrix:\n  scenario: [quick]\n", "matrix.scenario", "not allowed in a suite"),
    ("options:\n  trials: 1\nmatrix:\n  trials: [1, 2]\n", "matrix.trials",
     "also given as 'trials'"),
    ("matrix:\n  targets: [[flask]]\n", "matrix.targets", "also given as 'targets'"),
    ("matrix:\n  trials: 2\n", "matrix.trials", "a non-empty list of values"),
    ("matrix:\n  trials: []\n", "matrix.trials", "a non-empty list of values"),
    ("matrix:\n  encoding: [json, xml]\n", "cell digits-smoke-encoding=xml: matrix.encoding",
     "invalid choice: 'xml'"),
    ("matrix:\n  metrics: [true, 3]\n", "cell digits-smoke-metrics=3: matrix.metrics",
     "takes true or false"),
    ("options:\n  trials: zero\n", "options.trials", "argument --trials"),
    ("options:\n  metrics: 3\n", "options.metrics", "takes true or false"),
    ("name: ../../elsewhere\n", "name", "a suite's name is letters, digits"),
])
def test_a_bad_key_is_named(tmp_path: Path, extra: str, where: str, what: str) -> None:
    message = error(tmp_path, BASE + extra)
    assert f": {where}: " in message
    assert what in message


@pytest.mark.parametrize(("extra", "cell", "what"), [
    ("matrix:\n  target_cpus: ['0', '99']\n", "digits-smoke-target-cpus=99", "99"),
    ("options:\n  encodings: [json, binary]\n", "digits-smoke",
     "--encodings compares HTTP request encodings"),
])
def test_runs_own_checks_name_the_cell(tmp_path: Path, extra: str, cell: str,
                                       what: str) -> None:
    message = error(tmp_path, BASE + extra)
    assert f": cell {cell}: " in message
    assert what in message


@pytest.mark.parametrize(("bundles", "where", "what"), [
    ("[resnet]", "bundles[1]", "neither a built-in bundle"),
    ("[./missing.py]", "bundles[1]", "no bundle file"),
    ("[{model: m.pt2}]", "bundles[1].model", "no such file"),
    ("[{model: m.pt2, shape: 3}]", "bundles[1].shape", "not a key of a saved-model bundle"),
    ("[null]", "bundles[1]", "'null', in quotes"),
    ("[]", "bundles", "non-empty list"),
])
def test_a_bad_bundle_is_named(tmp_path: Path, bundles: str, where: str, what: str) -> None:
    message = error(tmp_path, BASE.replace("[digits, 'null']", bundles))
    assert f": {where}: " in message
    assert what in message


def test_a_scenario_that_does_not_exist_names_the_cell(tmp_path: Path) -> None:
    message = error(tmp_path, BASE.replace("[smoke]", "[smoke, nosuch]"))
    assert ": cell digits-nosuch: " in message


def test_the_hash_is_of_what_is_measured_not_the_text(tmp_path: Path) -> None:
    text = BASE + "matrix:\n  target_cpus: ['1', '0']\n"
    first = load_suite(str(write(tmp_path, text, "a.yaml")))
    same = load_suite(str(write(tmp_path, "# a comment\n" + text.replace("target_cpus",
                                                                          "target-cpus")
                                .replace("[inprocess]", "\n  - inprocess"), "a.yaml")))
    assert same.suite_hash == first.suite_hash
    other = load_suite(str(write(tmp_path, text + "options: {trials: 2}\n", "a.yaml")))
    assert other.suite_hash != first.suite_hash


def test_the_hash_does_not_change_with_the_suite_folders_place(tmp_path: Path) -> None:
    text = "bundles: [digits, ./b/tiny.py]\ntargets: [inprocess]\nscenarios: [smoke]\n"
    hashes = []
    for where in ("one", "two"):
        (tmp_path / where / "b").mkdir(parents=True)
        (tmp_path / where / "b" / "tiny.py").write_text("# a bundle\n")
        hashes.append(load_suite(str(write(tmp_path / where, text))).suite_hash)
    assert hashes[0] == hashes[1]


def test_a_matrix_value_given_twice_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, BASE + "matrix:\n  trials: [1, 1]\n")
    assert "cell digits-smoke-trials=1: two cells would share this id" in message


def test_builtin_suites_are_found_by_name() -> None:
    assert suite_file("standard").name == "standard.yaml"
    with pytest.raises(SuiteError, match="no built-in suite of that name: standard"):
        suite_file("nosuch")
    suite = load_suite("standard")
    assert [c["id"] for c in suite.cells] == ["digits-quick", "vision-quick"]


def test_check_lists_the_cells_and_runs_nothing(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, BASE + "matrix:\n  trials: [1, 2]\n")
    assert main(["suite", str(file), "--check", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    suite = load_suite(str(file))
    assert f"suite mine ({file}): 4 cells, hash {suite.suite_hash[:12]}" in out
    for cell in suite.cells:
        assert f"{cell['index']:>3}. {cell['id']}" in out
    assert f"total: ~{suite.estimated_s / 60:.1f} min" in out
    assert not (tmp_path / "out").exists()


def test_a_bad_suite_is_an_error_message(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, BASE + "options:\n  encodng: json\n")
    assert main(["suite", str(file), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"error: {file}: options.encodng: not an option of deploybench run; did you mean "
        "'encoding'?\n")
    assert not (tmp_path / "out").exists()
