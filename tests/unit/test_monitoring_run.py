"""``run --metrics``, ``--log-predictions`` and ``--monitoring``: which results a run
measures, how the options are checked, the scenario's ``monitoring`` key, and what each
result records (the fake target under a simulated load: no server runs)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.cpus import CpuPlan
from harness.encodings import Batching, measurements
from harness.loadgen.launch import EventSink, LoadJob, LoadResult
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.monitoring import parse_log_rate, parse_modes, prediction_log
from harness.runner import Runner, RunPlan, make_target
from scenarios import catalogue
from scenarios.catalogue import ScenarioError
from targets.batching import BatchingSpec
from targets.bundles.protocol import Prediction
from targets.monitoring import OFF, Monitoring, Scrape
from targets.predlog import PredictionLog

METRICS = Monitoring(metrics=True)
BOTH = Monitoring(metrics=True, log_rate=1.0)
MODES = (OFF, METRICS, BOTH)


# -- result names -------------------------------------------------------------------------
def test_each_mode_is_a_result_named_with_its_suffix_last() -> None:
    planned = measurements(("flask", "inprocess"), {}, ("json",), modes=MODES)
    assert [m.name for m in planned] == ["flask", "flask+metrics", "flask+metrics+log",
                                         "inprocess", "inprocess+metrics",
                                         "inprocess+metrics+log"]
    assert [m.monitoring for m in planned[:3]] == list(MODES)
    assert {m.deployment for m in planned[:3]} == {"flask"}


def test_modes_come_after_batch_and_encoding() -> None:
    batching = Batching(BatchingSpec(max_batch=8), unbatched=True)
    planned = measurements(("flask",), {}, ("json", "binary"), batching,
                           modes=(OFF, METRICS))
    assert [m.name for m in planned][:4] == ["flask-json", "flask-json+metrics",
                                             "flask-json+batch", "flask-json+batch+metrics"]
    assert len(planned) == 8


def test_one_mode_keeps_the_names_and_reaches_every_result() -> None:
    planned = measurements(("flask", "grpc"), {}, ("json",), modes=(METRICS,))
    assert [(m.name, m.monitoring) for m in planned] == [("flask", METRICS),
                                                          ("grpc", METRICS)]
    assert [m.monitoring for m in measurements(("flask",), {}, ("json",))] == [OFF]


def test_an_endpoint_is_measured_once_with_monitoring_off() -> None:
    endpoints = {"k8s": "http://127.0.0.1:1/predict"}
    planned = measurements(("flask", "k8s"), endpoints, ("json",), modes=MODES)
    assert [(m.name, m.monitoring.mode) for m in planned][-1] == ("k8s", "off")
    assert len(planned) == 4


def test_the_mode_reaches_the_targets_setup(tmp_path: Path) -> None:
    plan = RunPlan(targets=("flask",), bundle="digits", scenario=catalogue.load("smoke"),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path,
                   monitoring=(OFF, BOTH))
    logged = make_target("flask+metrics+log", plan, "json", tmp_path)
    assert logged.monitoring == BOTH  # type: ignore[attr-defined]
    assert logged.prediction_log_dir == tmp_path / "flask+metrics+log-predictions"  # type: ignore[attr-defined]
    plain = make_target("flask", plan, "json", tmp_path)
    assert plain.monitoring == OFF  # type: ignore[attr-defined]


# -- the options ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["0", "-0.5", "1.5", "nan", "x", "inf"])
def test_a_bad_log_rate_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="more than 0 and at most 1"):
        parse_log_rate(text)


def test_log_rates_and_modes_parse() -> None:
    assert parse_log_rate("1") == 1.0
    assert parse_log_rate("0.1") == 0.1
    assert parse_modes(" off, Metrics ,metrics+log") == ("off", "metrics", "metrics+log")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown monitoring mode 'logs'"):
        parse_modes("off,logs")
    with pytest.raises(argparse.ArgumentTypeError, match="named twice in --monitoring"):
        parse_modes("off,off")
    with pytest.raises(argparse.ArgumentTypeError, match="no monitoring mode"):
        parse_modes(" , ")


def test_a_bad_rate_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--targets", "flask", "--log-predictions", "2"])
    assert exit_info.value.code == 2
    assert "bad --log-predictions '2'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "says"), [
    (["--metrics", "--monitoring", "off,metrics"], "leave --metrics out"),
    (["--log-predictions", "0.5", "--monitoring", "off,metrics"], "has none: add log"),
    (["--endpoint", "k8s=http://127.0.0.1:1/predict", "--metrics"],
     "not ours to instrument"),
])
def test_contradicting_options_are_refused(argv: list[str], says: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    targets = [] if "--endpoint" in argv else ["--targets", "flask"]
    assert main(["run", *targets, *argv, "--out", str(tmp_path / "x")]) == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_deployment_that_cannot_monitor_is_refused_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Ray Serve's server refuses --metrics (its replicas are Ray's processes): the run says
    # so up front rather than fail at the server's start, whether ray is installed or not.
    assert main(["run", "--targets", "flask,rayserve", "--metrics",
                 "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "rayserve cannot expose metrics" in err or "rayserve needs" in err
    assert not (tmp_path / "x").exists()


def test_consistent_options_pass_and_the_scenario_says_its_modes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A bundle that does not exist stops the run after the options are checked.
    assert main(["run", "--targets", "flask", "--metrics", "--log-predictions", "0.5",
                 "--monitoring", "metrics,metrics+log", "--bundle", "nope",
                 "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "unknown bundle" in err or "nope" in err
    assert "--metrics" not in err
    assert main(["run", "--targets", "flask", "--scenario", "monitoring", "--bundle", "nope",
                 "--endpoint", "k8s=http://127.0.0.1:1/predict",
                 "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "measured with monitoring off, metrics, metrics+log" in err
    assert "k8s is measured once, monitoring off" in err


# -- the scenario key -------------------------------------------------------------------------
def test_the_monitoring_scenario_compares_three_modes() -> None:
    scenario = catalogue.load("monitoring")
    assert scenario.monitoring == ("off", "metrics", "metrics+log")
    assert scenario.concurrency == (1, 16)
    assert scenario.cold_starts == scenario.redeploys == 0
    assert scenario.scrape_interval_s == 5.0
    assert scenario.to_json()["monitoring"] == ["off", "metrics", "metrics+log"]
    assert catalogue.load("quick").monitoring == ()
    assert "monitoring" in catalogue.available()


@pytest.mark.parametrize(("extra", "said"), [
    ("monitoring: [off, logs]", "unknown monitoring mode 'logs' in the scenario's"),
    ("monitoring: [off, off]", "a monitoring mode is named twice in the scenario's"),
    ("monitoring: metrics", "must be a list of modes"),
    ("scrape_interval_s: 0", "'scrape_interval_s' must be a number >= 0.1"),
])
def test_bad_monitoring_keys_are_refused(tmp_path: Path, extra: str, said: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"concurrency: [1]\nwarmup_s: 0.1\nwindow_s: 1\n{extra}\n")
    with pytest.raises(ScenarioError, match=said):
        catalogue.load(str(path))


# -- what a result records --------------------------------------------------------------------
def test_each_result_records_its_mode(tmp_path: Path) -> None:
    plan = RunPlan(targets=("fake",), bundle="digits", scenario=catalogue.load("smoke"),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path,
                   monitoring=(OFF, METRICS))
    run = Runner(plan, SimulatedLoadGenerator()).run()
    assert run["metadata"].get("results_planned") == ["fake", "fake+metrics"]
    assert [(t["name"], t.get("monitoring")) for t in run["targets"]] == [
        ("fake", "off"), ("fake+metrics", "metrics")]
    assert all("prediction_log" not in t for t in run["targets"])


def test_a_prediction_log_is_counted_relative_to_the_run(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "flask+log-predictions"
    log = PredictionLog(folder, 1.0, "digits", "v1", synchronous=True)
    log.record(np.zeros((1, 4), dtype=np.float32), [Prediction(0, [1.0, 0.0])])
    log.close()
    found = prediction_log(folder, tmp_path)
    assert found["dir"] == "logs/flask+log-predictions"
    assert found["error"] is None
    assert found["rows"] == 1
    assert prediction_log(tmp_path / "none", tmp_path)["rows"] == 0


class ScrapedLoad(SimulatedLoadGenerator):
    """The simulated load, each stage's record holding two scrapes whose difference is
    the stage's samples less ``missing`` (as a target that missed requests would)."""

    def __init__(self, missing: int = 0) -> None:
        self.missing = missing

    def run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        load = super().run(job, on_event)
        stages = []
        for raw in load.stages:
            n = len(raw.ok)
            before = Scrape(at=0.0, requests=5, errors=0, latency_sum_s=0.0, latency_count=5)
            after = Scrape(at=1.0, requests=5 + n - self.missing, errors=0,
                           latency_sum_s=float(raw.latency_ms.sum()) / 2000.0,
                           latency_count=5 + n - self.missing)
            stages.append(dataclasses.replace(raw, target_metrics={
                "before": before.to_json(), "after": after.to_json(), "scrapes": 3,
                "error": None}))
        load.stages = stages
        return load


@pytest.mark.parametrize(("missing", "agrees"), [(0, True), (50, False)])
def test_each_stage_records_its_cross_check(tmp_path: Path, missing: int,
                                            agrees: bool) -> None:
    plan = RunPlan(targets=("fake",), bundle="digits", scenario=catalogue.load("smoke"),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path,
                   monitoring=(METRICS,))
    run = Runner(plan, ScrapedLoad(missing)).run()
    (result,) = run["targets"]
    assert result["name"] == "fake"
    for stage in result["stages"]:
        check = stage.get("target_metrics")
        assert check is not None
        assert check["loadgen_requests"] - check["target_requests"] == missing  # type: ignore[operator]
        assert check["agrees"] is agrees
        assert check["scrapes"] == 3
        if not missing:  # half the client's time in the handler (as made up above)
            assert check["target_mean_ms"] == pytest.approx(check["loadgen_mean_ms"] / 2)  # type: ignore[operator]
