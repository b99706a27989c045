from __future__ import annotations

from pathlib import Path

import pytest

from scenarios import catalogue
from scenarios.catalogue import ScenarioError


def test_builtin_scenarios_parse() -> None:
    names = set(catalogue.available())
    assert {"smoke", "quick", "coldstart"} <= names
    for name in names:
        sc = catalogue.load(name)
        assert sc.concurrency or sc.cold_starts
        assert all(n >= 1 for n in sc.concurrency)
        assert sc.duration_s > 0
        assert len(sc.sha256) == 64


def test_quick_has_enough_stages_for_a_curve() -> None:
    sc = catalogue.load("quick")
    assert len(sc.concurrency) >= 3
    assert sc.duration_s >= 5


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ScenarioError, match="smoke"):
        catalogue.load("nope")


@pytest.mark.parametrize(("text", "key"), [
    ("concurrency: [1]\nwarmup_s: 1\nduration_s: 1\nbogus: 1\n", "bogus"),
    ("warmup_s: 1\nduration_s: 1\n", "concurrency"),
    ("concurrency: [0]\nwarmup_s: 1\nduration_s: 1\n", "concurrency"),
    ("concurrency: [1]\nduration_s: 1\n", "warmup_s"),
    ("concurrency: [1]\nwarmup_s: x\nduration_s: 1\n", "warmup_s"),
    ("concurrency: [1]\nwarmup_s: 1\nduration_s: 0\n", "duration_s"),
    ("- just a list\n", "mapping"),
    ("concurrency: [1\n", "YAML"),
])
def test_bad_file_error_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=key):
        catalogue.load(str(path))


def test_user_file_is_hashed_by_content(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("concurrency: [1]\nwarmup_s: 0\nduration_s: 1\n")
    first = catalogue.load(str(a)).sha256
    a.write_text("concurrency: [2]\nwarmup_s: 0\nduration_s: 1\n")
    assert catalogue.load(str(a)).sha256 != first


def test_cold_start_only_scenario(tmp_path: Path) -> None:
    sc = catalogue.load("coldstart")
    assert sc.cold_starts >= 1
    assert sc.concurrency == ()
    path = tmp_path / "none.yaml"
    path.write_text("concurrency: []\nwarmup_s: 0\nduration_s: 1\n")
    with pytest.raises(ScenarioError, match="cold_starts"):
        catalogue.load(str(path))
