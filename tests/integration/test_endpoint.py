"""`run --endpoint NAME=URL`: deployments already running elsewhere, measured as they are.

The "elsewhere" here is a Flask and a gRPC server started by the test itself on loopback
(standing in for a Kubernetes service): the run must start nothing, check parity, load
them with the same users, and report their CPU and memory as not measured. A Lambda
function is the emulator's Invoke API, reached as real AWS is (boto3), with its endpoint
overridden.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cpus import CpuPlan
from harness.loadgen.analysis.serverless import summarize_invocations
from reports.schema import RunDoc, load_run
from targets.awslambda.client import InvokeClient
from targets.awslambda.target import LambdaTarget
from targets.flask.target import FlaskTarget
from targets.grpc.target import GrpcTarget
from targets.runtimes.external import ExternalTarget
from targets.runtimes.process import free_port
from tests.integration.stages import drive
from tests.unit.test_run_types import problems

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
    # Neither has a cost (their size is unknown here): latency decides between them,
    # when a VALID stage met the objective (smoke's short windows on a busy machine may
    # leave none: then the report says so).
    assert "Recommended: **k8s-" in md or "No deployment met" in md
    for name in ("k8s-flask", "k8s-grpc"):
        # (the at-a-glance row, whether it met the objective on this busy machine or not)
        row = next(line for line in md.splitlines()
                   if line.startswith((f"| {name} | yes |", f"| {name} | no |")))
        assert row.split("|")[10:13] == [" - ", " - ", " - "], row  # $/M x86, arm64, $/month


def test_an_unreachable_endpoint_fails_that_target_only(tmp_path: Path) -> None:
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


def test_a_lambda_function_is_measured_through_the_invoke_api(
        tmp_path: Path, cpus: CpuPlan) -> None:
    emulated = tmp_path / "emulator-records.jsonl"
    # No credentials anywhere: calls to an emulator's endpoint go unsigned.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    with LambdaTarget("digits", list(cpus.target), "json", concurrency=4,
                      records_path=emulated, log_path=tmp_path / "lambda.log") as function:
        out = tmp_path / "run"
        address = f"lambda://us-east-1/deploybench?endpoint={function.url}"
        done = subprocess.run(
            [sys.executable, "-m", "harness", "run", "--bundle", "digits",
             "--scenario", "smoke", "--encoding", "binary", "--out", str(out),
             "--endpoint", f"fn={address}"],
            capture_output=True, text=True, timeout=240, check=False, env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert function.health()
    run = load_run(out)
    assert problems(run, RunDoc) == []  # the function's address, REPORT lines' summary
    target = run["targets"][0]
    assert target["status"] == "ok", target["error"]
    assert target["parity"]["ok"]
    assert target["describe"]["signed"] is False
    assert target["describe"]["memory_mb"] == function.memory_mb
    # What Lambda reported for each call is what the emulator recorded for it.
    ours = [json.loads(line) for path in (out / "logs" / "fn-invocations").glob("*.jsonl")
            for line in path.read_text().splitlines()]
    theirs = {r["request_id"]: r for r in map(json.loads, emulated.read_text().splitlines())
              if r.get("source") == "invoke"}
    assert ours
    assert all(r["billed_ms"] == theirs[r["request_id"]]["billed_ms"]
                        and r["cold"] == theirs[r["request_id"]]["cold"] for r in ours)
    new_environments = 0
    for stage in target["stages"]:
        assert stage["errors"] == 0
        platform = stage["platform"]
        # Counted by send time, as the stage's requests are: the same calls.
        assert platform["invocations"] == stage["requests"] > 0
        assert platform["cost_per_million_usd"]["x86_64"] > 0
        new_environments += platform["cold"] + platform["scale_out"]["cold_starts"]
    assert new_environments >= 1  # 4 users need more environments than parity's one
    md = (out / "report.md").read_text()
    assert "fn is a Lambda function that was already deployed" in md
    row = next(line for line in md.splitlines()
               if line.startswith(("| fn | yes |", "| fn | no |")))
    assert row.split("|")[12].strip().startswith("$"), row  # a monthly cost, from REPORT


def test_a_throttled_function_fails_calls_and_counts_them(
        tmp_path: Path, cpus: CpuPlan, digits) -> None:  # type: ignore[no-untyped-def]
    """Beyond its concurrency limit Lambda answers 429 TooManyRequestsException: a failed
    call (never retried: that would hide it), and a throttle in the platform's count."""
    examples = digits.example_requests()[:8]
    with LambdaTarget("digits", list(cpus.target), "json", concurrency=1,
                      log_path=tmp_path / "lambda.log") as function:
        address = f"lambda://us-east-1/deploybench?endpoint={function.url}"
        client = InvokeClient("fn", address, "json", records_dir=tmp_path / "records")
        with ExternalTarget("fn", address, client) as target:
            result = drive("fn", target.load_spec(examples), list(cpus.loadgen), tmp_path)
            records = target.platform_records()
    stage = result.stages[0]
    window = (stage.start_s >= stage.window_start) & (stage.start_s < stage.window_end)
    ok = stage.ok[window]
    assert not ok.all()
    assert ok.any()
    assert records is not None
    platform = summarize_invocations(records, stage.window_start, stage.window_end,
                                     {"lambda_request": 2e-7,
                                      "lambda_gb_second": {"x86_64": 1.6e-5}})
    assert platform["throttled"] > 0
    assert platform["invocations"] + platform["throttled"] == len(ok)
    assert platform["throttled"] == int((~ok).sum())
