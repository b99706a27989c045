"""`run --loadgen-workers 2`: a Locust master and two worker processes drive a real Flask
server; the workers' raw samples are merged, never their percentiles."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.cpus import CpuPlan
from reports.schema import RunDoc, load_run, read_samples
from targets.flask.target import FlaskTarget
from targets.runtimes.process import free_port
from tests.unit.test_run_types import problems

pytestmark = pytest.mark.integration


def nearest_rank(values: np.ndarray, fraction: float) -> float:
    ordered = np.sort(values)
    return float(ordered[max(1, math.ceil(round(fraction * len(ordered), 9))) - 1])


def test_two_workers_samples_are_merged(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "flask", "--bundle", "digits",
         "--scenario", "smoke", "--loadgen-workers", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert problems(run, RunDoc) == []  # the workers' block among them
    assert run["metadata"]["loadgen_workers"] == 2
    flask = run["targets"][0]
    assert flask["status"] == "ok", flask["error"]
    samples = read_samples(out)
    for index, stage in enumerate(flask["stages"]):
        assert stage["errors"] == 0
        mine = samples["stage"] == index
        # Every sample came from one of the two workers, and none was lost or doubled.
        assert len(stage["worker_samples"]) == 2
        assert sum(stage["worker_samples"]) == int(mine.sum())
        if stage["concurrency"] >= 2:  # users are spread over both workers
            assert min(stage["worker_samples"]) > 0
        # The stage's percentiles are those of the merged raw samples in its window.
        window = mine & (samples["phase"] == "measure") & samples["ok"]
        latency = samples["latency_ms"][window]
        assert stage["latency_ms"] is not None
        assert len(latency) == stage["requests"] - stage["errors"]
        for key, fraction in (("p50", 0.5), ("p99", 0.99)):
            # (samples.csv.gz keeps latency to 0.1 us)
            assert stage["latency_ms"][key] == pytest.approx(nearest_rank(latency, fraction),
                                                             abs=1e-3)
    # The workers are gone: nothing the run started is left.
    workers = flask["loadgen"]["workers"]
    assert [w["local"] for w in workers] == [True, True]
    assert not [w["pid"] for w in workers if _alive(w["pid"])]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_on_other_machines_join_by_hand(tmp_path: Path, cpus: CpuPlan) -> None:
    """`--loadgen-remote-workers 1`: the master waits for a worker started by hand (here
    on this machine, as another machine's would be: `deploybench loadgen-worker`), which
    serves one target after another and exits after the run's last."""
    master = f"127.0.0.1:{free_port('127.0.0.1')}"
    out = tmp_path / "run"
    with FlaskTarget("digits", list(cpus.target), "json",
                     log_path=tmp_path / "flask.log") as flask, \
            (tmp_path / "worker.log").open("wb") as log:
        # Started first: it waits for the first target's master, as Locust's workers do.
        worker = subprocess.Popen(
            [sys.executable, "-m", "harness", "loadgen-worker", "--master", master],
            stdout=log, stderr=log)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "harness", "run", "--bundle", "digits",
                 "--scenario", "smoke", "--out", str(out), "--loadgen-remote-workers", "1",
                 "--loadgen-master", master,
                 "--endpoint", f"one=http://{flask.address}",
                 "--endpoint", f"two=http://{flask.address}"],
                capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stderr[-3000:]
            assert worker.wait(timeout=30) == 0  # by itself, after the last target
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    run = load_run(out)
    assert run["metadata"]["loadgen_remote_workers"] == 1
    for target in run["targets"]:
        assert target["status"] == "ok", target["error"]
        workers = target["loadgen"]["workers"]
        assert sorted(w["local"] for w in workers) == [False, True]
        assert next(w for w in workers if not w["local"])["pid"] == worker.pid
        for stage in target["stages"]:
            assert stage["errors"] == 0
            assert len(stage["worker_samples"]) == 2
            if stage["concurrency"] >= 2:  # the remote worker ran users too
                assert min(stage["worker_samples"]) > 0


def test_open_loop_scenarios_are_refused_with_workers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--targets", "flask", "--scenario", "rate",
         "--loadgen-workers", "2", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert "closed-loop stages only" in done.stderr
    assert not (tmp_path / "run").exists()
