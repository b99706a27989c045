from __future__ import annotations

from pathlib import Path

import pytest

from scenarios import catalogue
from scenarios.catalogue import ScenarioError


def test_builtin_scenarios_parse() -> None:
    names = set(catalogue.available())
    assert {"smoke", "quick", "coldstart", "sweep", "rate"} <= names
    for name in names:
        sc = catalogue.load(name)
        assert sc.has_load or sc.cold_starts
        assert all(n >= 1 for n in sc.concurrency)
        assert sc.window_s > 0
        assert len(sc.sha256) == 64


def test_quick_has_enough_stages_for_a_curve() -> None:
    sc = catalogue.load("quick")
    assert len(sc.concurrency) >= 3
    # Stable windows hold enough requests for p99 at ~250 req/s (662 needs 2.6 s).
    assert sc.window_s * sc.stability_windows >= 5


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ScenarioError, match="smoke"):
        catalogue.load("nope")


@pytest.mark.parametrize(("text", "key"), [
    ("concurrency: [1]\nwarmup_s: 1\nwindow_s: 1\nbogus: 1\n", "bogus"),
    ("warmup_s: 1\nwindow_s: 1\n", "concurrency"),
    ("concurrency: [0]\nwarmup_s: 1\nwindow_s: 1\n", "concurrency"),
    ("concurrency: [1]\nwindow_s: 1\n", "warmup_s"),
    ("concurrency: [1]\nwarmup_s: x\nwindow_s: 1\n", "warmup_s"),
    ("concurrency: [1]\nwarmup_s: 1\nwindow_s: 0\n", "window_s"),
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
    a.write_text("concurrency: [1]\nwarmup_s: 0\nwindow_s: 1\n")
    first = catalogue.load(str(a)).sha256
    a.write_text("concurrency: [2]\nwarmup_s: 0\nwindow_s: 1\n")
    assert catalogue.load(str(a)).sha256 != first


def test_cold_start_only_scenario(tmp_path: Path) -> None:
    sc = catalogue.load("coldstart")
    assert sc.cold_starts >= 1
    assert sc.concurrency == ()
    path = tmp_path / "none.yaml"
    path.write_text("concurrency: []\nwarmup_s: 0\nwindow_s: 1\n")
    with pytest.raises(ScenarioError, match="cold_starts"):
        catalogue.load(str(path))


@pytest.mark.parametrize(("text", "key"), [
    ("concurrency: [1]\nwarmup_s: 1\nduration_s: 1\n", "window_s"),  # the renamed key
    ("sweep: {start: 4, max: 2}\nwarmup_s: 1\n", "sweep.max"),
    ("sweep: {bogus: 1}\nwarmup_s: 1\n", "sweep.bogus"),
    ("rate: [0]\nwarmup_s: 1\n", "rate"),
    ("rate_fractions: [0.5]\nwarmup_s: 1\n", "rate_fractions"),  # needs a capacity
    ("rate: [10]\narrival: burst\nwarmup_s: 1\n", "arrival"),
    ("concurrency: [1]\nwarmup_s: 1\nstability_windows: 4\nmax_windows: 3\n", "max_windows"),
    ("concurrency: [1]\nwarmup_s: 1\nstability_tolerance: 2\n", "stability_tolerance"),
])
def test_new_keys_are_checked(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        catalogue.load(str(path))


def test_sweep_and_rate_scenarios() -> None:
    sweep = catalogue.load("sweep")
    assert sweep.sweep is not None
    assert sweep.sweep.levels()[:4] == [1, 2, 4, 8]
    assert sweep.sweep.min_gain == 0.05
    assert sweep.sweep.patience == 4
    rate = catalogue.load("rate")
    assert rate.rate_fractions == (0.25, 0.5, 0.75, 0.9)
    assert rate.arrival == "poisson"
    assert rate.peak_concurrency() == 256  # max_inflight


def test_slo_parsing() -> None:
    from argparse import ArgumentTypeError

    from harness.options import parse_slo

    assert parse_slo("p99=50ms,rps=500") == {"p99": 50.0, "rps": 500.0}
    assert parse_slo("p99=0.2s") == {"p99": 200.0}
    assert parse_slo("P95=7") == {"p95": 7.0}
    for bad in ("p98=1ms", "p99", "p99=fast", "p99=0", ""):
        with pytest.raises(ArgumentTypeError):
            parse_slo(bad)
