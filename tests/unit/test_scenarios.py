from __future__ import annotations

import re
from argparse import ArgumentTypeError
from pathlib import Path

import pytest

from harness.options import parse_slo
from scenarios import catalogue
from scenarios.catalogue import ScenarioError


def test_builtin_scenarios_parse() -> None:
    names = set(catalogue.available())
    assert {"smoke", "quick", "coldstart", "sweep", "rate", "spike", "soak",
            "redeploy"} <= names
    for name in names:
        sc = catalogue.load(name)
        assert sc.has_load or sc.cold_starts or sc.redeploys
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


def test_spike_and_soak_are_timelines() -> None:
    spike = catalogue.load("spike")
    assert [(s.users, s.label) for s in spike.timeline] == [
        (2, "baseline"), (32, "burst"), (2, "after")]
    assert spike.concurrency == ()
    assert spike.sweep is None
    assert not spike.rate
    assert spike.planned_stages() == 1
    assert spike.peak_concurrency() == 32  # sizes Lambda's concurrency for the burst
    assert spike.estimated_s == spike.warmup_s + 30 + spike.cooldown_s
    soak = catalogue.load("soak")
    assert [s.users for s in soak.timeline] == [8]
    assert sum(s.seconds for s in soak.timeline) >= 600
    assert soak.sample_s == 10.0
    assert soak.to_json()["timeline"] == [{"users": 8, "seconds": 600.0, "label": "steady"}]


def test_timeline_beside_other_stages(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text("concurrency: [1, 4]\nwarmup_s: 1\nwindow_s: 1\n"
                    "timeline:\n  - {users: 3, seconds: 2}\n  - {users: 6, seconds: 1.5, "
                    "label: ' peak '}\nsample_s: 0.5\n")
    sc = catalogue.load(str(path))
    assert sc.concurrency == (1, 4)
    assert [(s.users, s.seconds, s.label) for s in sc.timeline] == [(3, 2.0, ""),
                                                                       (6, 1.5, "peak")]
    assert [s.name(i) for i, s in enumerate(sc.timeline)] == ["segment 1", "peak"]
    assert sc.sample_s == 0.5
    assert sc.planned_stages() == 3
    assert sc.peak_concurrency() == 6
    assert sc.estimated_s == sc.stage_s() * 2 + sc.timeline_s()
    assert catalogue.load("smoke").timeline == ()  # older scenarios: no timeline


@pytest.mark.parametrize(("text", "key"), [
    ("timeline: [{users: 2, seconds: 1}, {users: 0, seconds: 1}]\n", "timeline[1].users"),
    ("timeline: [{users: 2, seconds: 1}, {users: x, seconds: 1}]\n", "timeline[1].users"),
    ("timeline: [{users: 2, seconds: 0}]\n", "timeline[0].seconds"),
    ("timeline: [{users: 2}]\n", "timeline[0].seconds"),
    ("timeline: [{seconds: 2}]\n", "timeline[0].users"),
    ("timeline: [{users: 2, seconds: 1, label: 3}]\n", "timeline[0].label"),
    ("timeline: [{users: 2, seconds: 1, bogus: 1}]\n", "timeline[0].bogus"),
    ("timeline: [3]\n", "timeline[0]"),
    ("timeline: []\n", "'timeline'"),
    ("timeline: {users: 2, seconds: 1}\n", "'timeline'"),
    ("timeline: [{users: 2, seconds: 1}]\nsample_s: 0\n", "sample_s"),
    ("concurrency: [1]\nsample_s: 1\n", "sample_s"),  # a series needs a timeline
])
def test_timeline_keys_are_checked(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text + "warmup_s: 1\n")
    with pytest.raises(ScenarioError, match=re.escape(key)):
        catalogue.load(str(path))


def test_slo_parsing() -> None:

    assert parse_slo("p99=50ms,rps=500") == {"p99": 50.0, "rps": 500.0}
    assert parse_slo("p99=0.2s") == {"p99": 200.0}
    assert parse_slo("P95=7") == {"p95": 7.0}
    for bad in ("p98=1ms", "p99", "p99=fast", "p99=0", ""):
        with pytest.raises(ArgumentTypeError):
            parse_slo(bad)
