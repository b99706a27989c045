"""--endpoint NAME=URL: what is accepted, and what a bad one is told."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from harness.cli import main
from targets.awslambda import invoke
from targets.awslambda.client import InvokeClient
from targets.awslambda.invoke import FunctionAddress, Invocation, parse_address, parse_report
from targets.flask.target import FlaskTarget
from targets.grpc.client import GrpcClient
from targets.grpc.target import GrpcTarget
from targets.registry import Setup, external, parse_endpoint
from targets.runtimes.external import ExternalTarget
from targets.wire.httpapi import HttpApiClient


def _endpoint(name: str, url: str, encoding: str = "json") -> ExternalTarget:
    return external(url, Setup(name=name, bundle="digits", cpus=(), encoding=encoding,
                               log_dir=Path("logs")))


def test_endpoints_parse() -> None:
    assert parse_endpoint("k8s-flask=http://10.0.0.5:8000/v1") == \
        ("k8s-flask", "http://10.0.0.5:8000/v1")
    http = _endpoint("a", "http://10.0.0.5:8000/v1/")
    assert isinstance(http.client, HttpApiClient)
    assert http.load_spec([])["path"] == "/v1/predict"
    assert isinstance(_endpoint("b", "grpc://h:50051").client, GrpcClient)


def test_an_endpoint_speaks_through_the_client_of_the_deployment_it_serves() -> None:
    """An external Flask (or gRPC) endpoint and the one deploybench starts share one
    protocol client: the same health check, parity and load."""
    flask = FlaskTarget("digits", [1], "json", port=8000)
    assert type(flask.make_client()) is type(_endpoint("k8s", "http://10.0.0.5:8000").client)
    grpc = GrpcTarget("digits", [1], "json", port=50051)
    assert type(grpc.make_client()) is type(_endpoint("k8s", "grpc://10.0.0.6:1").client)


@pytest.mark.parametrize(("text", "problem"), [
    ("flask", "write NAME=URL"),
    ("x=ftp://host:1", "scheme 'ftp' is not supported"),
    ("x=http://host", "needs a host and a port"),
    ("x=grpc://host:1/path", "a gRPC address has no path"),
    ("a b=http://h:1", "letters, digits"),
])
def test_bad_endpoints_say_what_to_write(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_endpoint(text)


def test_an_endpoint_may_not_take_a_built_in_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--endpoint", "flask=http://127.0.0.1:8000"])
    assert exit_info.value.code == 2
    assert "is a built-in target's" in capsys.readouterr().err


# -- Lambda functions through the Invoke API ---------------------------------------------

def test_lambda_addresses_parse() -> None:
    assert parse_address("lambda://eu-west-1/digits:prod") == \
        FunctionAddress("eu-west-1", "digits", "prod")
    assert parse_address("lambda://us-east-1/fn?endpoint=http://127.0.0.1:9000") == \
        FunctionAddress("us-east-1", "fn", None, "http://127.0.0.1:9000")
    arn = "arn:aws:lambda:ap-southeast-2:123456789012:function:digits"
    assert parse_address(arn) == FunctionAddress("ap-southeast-2", arn)
    assert parse_address(arn + ":$LATEST") == FunctionAddress("ap-southeast-2", arn, "$LATEST")
    assert parse_endpoint(f"aws={arn}") == ("aws", arn)
    target = _endpoint("aws", "lambda://eu-west-1/digits", "binary")
    assert isinstance(target.client, InvokeClient)
    assert target.describe()["billing"] == "per_request"


@pytest.mark.parametrize(("text", "problem"), [
    ("x=lambda://digits", "is not an AWS region"),
    ("x=lambda://eu-west-1/", "is not a Lambda function name"),
    ("x=lambda://eu-west-1/a.b", "is not a Lambda function name"),
    ("x=lambda://eu-west-1/fn:a.b", "is not a version or alias"),
    ("x=lambda://eu-west-1/fn?region=x", "unknown option 'region'"),
    ("x=lambda://eu-west-1/fn?endpoint=localhost:9000", "is not an http"),
    ("x=arn:aws:s3:::bucket", "is not a Lambda function address"),
])
def test_bad_lambda_addresses_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_endpoint(text)


def _tail(*lines: str) -> str:
    return base64.b64encode("\n".join(lines).encode()).decode()


def test_report_lines_are_read_as_aws_writes_them() -> None:
    # AWS's own format: tab-separated, a trailing tab, Init Duration on cold starts only.
    cold = ("REPORT RequestId: 3604209a-e9a3-11e6-939a-754dd98c7be3\tDuration: 12.34 ms\t"
            "Billed Duration: 264 ms\tMemory Size: 1024 MB\tMax Memory Used: 183 MB\t"
            "Init Duration: 251.02 ms\t")
    assert parse_report(_tail("START RequestId: x Version: $LATEST", "hello",
                              "END RequestId: x", cold)) == {
        "duration_ms": 12.34, "billed_ms": 264.0, "memory_mb": 1024.0,
        "max_memory_used_mb": 183.0, "init_ms": 251.02}
    warm = cold.split("Init", maxsplit=1)[0]
    assert "init_ms" not in (parse_report(_tail(warm)) or {})
    assert parse_report(_tail("no report here")) is None
    assert parse_report(None) is None


def test_invocations_are_recorded_like_the_emulators() -> None:
    report = {"duration_ms": 2.5, "billed_ms": 3.0, "memory_mb": 512.0,
              "max_memory_used_mb": 90.0, "init_ms": 300.0}
    record = Invocation(b'{"predictions": []}', None, report, "id-1").record(100.0)
    assert record["ts"] == 100.0
    assert record["cold"]
    assert record["billed_ms"] == 3
    assert record["memory_mb"] == 512
    assert record["outcome"] == "ok"
    assert record["reported"]
    failed = Invocation(b'{"errorType": "InvalidRequest", "errorMessage": "bad shape"}',
                        "Unhandled", None, "id-2")
    assert failed.record(1.0)["outcome"] == "function_error"
    assert failed.error_text() == "Unhandled: InvalidRequest: bad shape"


def test_without_report_lines_a_function_has_no_cost(tmp_path: Path) -> None:
    """A log tail without REPORT (an emulator that returns none) means no billed duration:
    no platform figures, rather than a cost of zero."""
    url = "lambda://eu-west-1/fn"
    target = ExternalTarget("fn", url, InvokeClient("fn", url, "json", records_dir=tmp_path))
    good = {"ts": 1.0, "outcome": "ok", "reported": True, "billed_ms": 3}
    (tmp_path / "invocations-1.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "invocations-2.jsonl").write_text(
        json.dumps({"ts": 0.5, "outcome": "throttled"}) + "\n")
    assert [r["ts"] for r in target.platform_records() or []] == [0.5, 1.0]
    (tmp_path / "invocations-3.jsonl").write_text(
        json.dumps({**good, "reported": False}) + "\n")
    assert target.platform_records() is None


def test_no_credentials_and_no_endpoint_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(invoke, "_SESSIONS", {})
    with pytest.raises(invoke.InvokeError, match="no AWS credentials found"):
        invoke.has_credentials(invoke.parse_address("lambda://eu-west-1/fn"))
    local = invoke.parse_address("lambda://eu-west-1/fn?endpoint=http://127.0.0.1:9")
    assert invoke.has_credentials(local) is False  # an emulator: unsigned calls
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setattr(invoke, "_SESSIONS", {})
    assert invoke.has_credentials(local) is True
