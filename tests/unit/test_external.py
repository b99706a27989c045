"""--endpoint NAME=URL: what is accepted, and what a bad one is told."""

from __future__ import annotations

import pytest

from harness.cli import main
from targets.external import ExternalGrpcTarget, ExternalHttpTarget, make_external, parse_endpoint


def test_endpoints_parse() -> None:
    assert parse_endpoint("k8s-flask=http://10.0.0.5:8000/v1") == \
        ("k8s-flask", "http://10.0.0.5:8000/v1")
    http = make_external("a", "http://10.0.0.5:8000/v1/", "json")
    assert isinstance(http, ExternalHttpTarget)
    assert http.load_spec([])["path"] == "/v1/predict"
    assert isinstance(make_external("b", "grpc://h:50051", "json"), ExternalGrpcTarget)


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
