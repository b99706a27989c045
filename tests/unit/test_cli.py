from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from targets import registry


@pytest.fixture
def keep_affinity():  # type: ignore[no-untyped-def]
    before = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, before)  # `run` pins the process it runs in


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--targets", "kubernetes"])
    assert info.value.code == 2
    assert "unknown target" in capsys.readouterr().err


def test_user_error_exits_1_with_message(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    assert main(["run", "--bundle", "nope", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown bundle ('nope')")
    assert not (tmp_path / "x").exists()  # nothing started, nothing written


def test_report_on_empty_folder_says_what_to_do(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "deploybench run" in capsys.readouterr().err


@pytest.mark.usefixtures("keep_affinity")
def test_run_with_fake_target_writes_everything(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    out = tmp_path / "demo"
    assert main(["run", "--targets", "fake", "--scenario", "smoke", "--out", str(out)]) == 0
    for name in ("run.json", "report.md", "report.html", "samples.csv.gz"):
        assert (out / name).exists(), name
    # Same folder again: a new numbered one, the first untouched.
    first = (out / "run.json").read_bytes()
    assert main(["run", "--targets", "fake", "--scenario", "smoke", "--out", str(out)]) == 0
    assert (tmp_path / "demo-2" / "run.json").exists()
    assert (out / "run.json").read_bytes() == first
    assert "writing to" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0


def test_scenarios_and_bundles_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    assert "quick" in capsys.readouterr().out
    assert main(["bundles"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out
    assert "vision" in out


def test_rayserve_without_ray_says_how_to_install_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    absent = replace(registry.DEPLOYMENTS["rayserve"],
                     requires=("deploybench_no_such_module",))
    monkeypatch.setitem(registry.DEPLOYMENTS, "rayserve", absent)
    out = tmp_path / "x"
    assert main(["run", "--targets", "rayserve", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: rayserve needs deploybench_no_such_module")
    assert "pip install -e '.[ray]'" in err
    assert not out.exists()  # refused before anything started
    assert main(["serve", "rayserve", "--port", "0"]) == 1
    assert "pip install -e '.[ray]'" in capsys.readouterr().err


def test_rayserve_has_no_container_image(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    assert main(["run", "--targets", "rayserve", "--runtime", "docker",
                 "--out", str(tmp_path / "x")]) == 1
    assert "rayserve has no container image" in capsys.readouterr().err
