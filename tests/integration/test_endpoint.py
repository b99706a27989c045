"""`run --endpoint NAME=URL`: deployments already running elsewhere, measured as they are.

The "elsewhere" here is a Flask and a gRPC server started by the test itself on loopback
(standing in for a Kubernetes service): the run must start nothing, check parity, load
them with the same users, and report their CPU and memory as not measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cpus import CpuPlan
from reports.schema import load_run
from targets.flask.target import FlaskTarget
from targets.grpc.target import GrpcTarget

pytestmark = pytest.mark.integration


def test_running_deployments_are_measured_without_being_started(
        tmp_path: Path, cpus: CpuPlan) -> None:
    with FlaskTarget("digits", list(cpus.target), "json",
                     log_path=tmp_path / "flask.log") as flask, \
            GrpcTarget("digits", list(cpus.target), "json",
                       log_path=tmp_path / "grpc.log") as grpc:
        out = tmp_path / "run"
        done = subprocess.run(
            [sys.executable, "-m", "harness", "run", "--bundle", "digits",
             "--scenario", "smoke", "--out", str(out),
             "--endpoint", f"k8s-flask=http://{flask.address}",
             "--endpoint", f"k8s-grpc=grpc://{grpc.address}"],
            capture_output=True, text=True, timeout=240, check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        # Still ours and still serving: the run stopped nothing it had not started.
        assert flask.health()
        assert grpc.health()
    run = load_run(out)
    assert [t["name"] for t in run["targets"]] == ["k8s-flask", "k8s-grpc"]
    assert run["metadata"]["endpoints"]["k8s-grpc"] == f"grpc://{grpc.address}"
    for target in run["targets"]:
        assert target["status"] == "ok", target["error"]
        assert target["describe"]["external"] is True
        assert target["parity"] is not None
        assert target["parity"]["ok"]
        for stage in target["stages"]:
            assert stage["errors"] == 0
            assert stage["rps"] > 0
            # Not measurable from here: absent, never a flattering zero.
            assert stage["target_cpu_percent"] is None
            assert stage["target_cpu_ms_per_request"] is None
            assert stage["target_rss_mb"] is None
    md = (out / "report.md").read_text()
    assert "k8s-flask is an endpoint that was already running" in md
    # Neither has a cost (their size is unknown here): latency decides between them.
    assert "Recommended: **k8s-" in md
    for name in ("k8s-flask", "k8s-grpc"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} | yes |"))
        assert row.split("|")[10:13] == [" - ", " - ", " - "], row  # $/M x86, arm64, $/month


def test_an_unreachable_endpoint_fails_that_target_only(tmp_path: Path) -> None:
    from targets.process import free_port

    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--bundle", "digits", "--scenario", "smoke",
         "--out", str(out), "--endpoint", f"gone=http://127.0.0.1:{free_port('127.0.0.1')}"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1
    run = load_run(out)
    assert run["targets"][0]["status"] == "failed"
    assert "did not answer its health check" in run["targets"][0]["error"]
