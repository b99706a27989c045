"""`run --encodings`: which results are planned, how they are named and built, what the
runner records, and the command line that asks for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.cpus import CpuPlan
from harness.encodings import Measurement, duplicates, measurements
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.runner import Runner, RunPlan, make_target
from reports.schema import load_run, read_samples
from scenarios.catalogue import Scenario

SCENARIO = Scenario(name="unit", description="", concurrency=(1, 4), warmup_s=0.5,
                    stability_windows=1, max_windows=1, window_s=2.0, cooldown_s=0.5,
                    drain_timeout_s=1.0, sha256="0" * 64, path="unit.yaml")


def plan(out: Path, targets: tuple[str, ...], encodings: tuple[str, ...] = ("json", "binary"),
         endpoints: dict[str, str] | None = None) -> RunPlan:
    return RunPlan(targets=targets, bundle="digits", scenario=SCENARIO,
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=out, encodings=encodings,
                   endpoints=endpoints or {})


def test_http_targets_are_measured_once_per_encoding_the_others_once() -> None:
    planned = measurements(("inprocess", "flask", "fastapi", "grpc", "lambda"), {},
                           ("json", "binary"))
    assert planned == [
        Measurement("inprocess", "inprocess", "json", None),
        Measurement("flask-json", "flask", "json", "json"),
        Measurement("flask-binary", "flask", "binary", "binary"),
        Measurement("fastapi-json", "fastapi", "json", "json"),
        Measurement("fastapi-binary", "fastapi", "binary", "binary"),
        Measurement("grpc", "grpc", "json", "protobuf"),
        Measurement("lambda-json", "lambda", "json", "json"),
        Measurement("lambda-binary", "lambda", "binary", "binary"),
    ]


def test_one_encoding_keeps_the_plain_names() -> None:
    planned = measurements(("flask", "grpc"), {}, ("binary",))
    assert [(m.name, m.wire) for m in planned] == [("flask", "binary"), ("grpc", "protobuf")]


def test_endpoints_http_per_encoding_grpc_and_lambda_once() -> None:
    endpoints = {"k8s": "http://10.0.0.5:8000", "rpc": "grpc://10.0.0.6:50051",
                 "fn": "lambda://eu-west-1/predict"}
    planned = measurements(tuple(endpoints), endpoints, ("json", "binary"))
    assert [(m.name, m.deployment, m.wire) for m in planned] == [
        ("k8s-json", "k8s", "json"), ("k8s-binary", "k8s", "binary"),
        ("rpc", "rpc", "protobuf"), ("fn", "fn", "json")]


def test_a_name_planned_twice_is_found() -> None:
    endpoints = {"flask-json": "grpc://10.0.0.6:50051"}
    assert duplicates(measurements(("flask", "flask-json"), endpoints,
                                   ("json", "binary"))) == ["flask-json"]


def test_files_are_named_after_the_result_and_the_image_after_the_kind(tmp_path: Path) -> None:
    p = plan(tmp_path, ("flask", "lambda"))
    lam = make_target("lambda-binary", p, "binary", tmp_path)
    assert lam.name == "lambda-binary"
    assert type(lam).name == "lambda"  # the container image stays deploybench-lambda
    assert getattr(lam, "encoding", None) == "binary"
    assert getattr(lam, "log_path", None) == tmp_path / "lambda-binary.log"
    assert getattr(lam, "records_path", None) == tmp_path / "lambda-binary-invocations.jsonl"
    flask = make_target("flask-json", p, "json", tmp_path)
    assert (flask.name, getattr(flask, "log_path", None)) == ("flask-json",
                                                              tmp_path / "flask-json.log")


def test_an_http_endpoint_is_built_per_encoding(tmp_path: Path) -> None:
    p = plan(tmp_path, ("k8s",), endpoints={"k8s": "http://10.0.0.5:8000"})
    target = make_target("k8s-binary", p, "binary", tmp_path)
    assert (target.name, getattr(target, "encoding", None)) == ("k8s-binary", "binary")
    assert target.load_spec([])["url"] == "http://10.0.0.5:8000"


def test_runner_measures_each_encoding_as_its_own_result(tmp_path: Path) -> None:
    run = Runner(plan(tmp_path, ("fake",)), SimulatedLoadGenerator()).run()
    assert run["status"] == "complete"
    assert run["metadata"]["encodings"] == ["json", "binary"]
    assert run["metadata"]["results_planned"] == ["fake-json", "fake-binary"]
    assert [t["name"] for t in run["targets"]] == ["fake-json", "fake-binary"]
    for target, wire in zip(run["targets"], ("json", "binary"), strict=True):
        assert target["status"] == "ok"
        assert target["parity"] is not None
        assert target["parity"]["ok"]  # checked for every result
        assert (target.get("deployment"), target.get("encoding")) == ("fake", wire)
    assert set(read_samples(tmp_path)["target"]) == {"fake-json", "fake-binary"}
    assert [t["name"] for t in load_run(tmp_path)["targets"]] == ["fake-json", "fake-binary"]


def test_encodings_option_parses_a_list() -> None:
    args = build_parser().parse_args(["run", "--encodings", "json, Binary"])
    assert args.encodings == ("json", "binary")
    assert args.encoding is None
    assert build_parser().parse_args(["run", "--encoding", "binary"]).encoding == "binary"


@pytest.mark.parametrize(("argv", "message"), [
    (["--encodings", "json,xml"], "unknown encoding 'xml'; choose from json, binary"),
    (["--encodings", "json,json"], "an encoding is named twice"),
    (["--encodings", ""], "unknown encoding ''"),
    (["--encoding", "json", "--encodings", "json,binary"],
     "argument --encodings: not allowed with argument --encoding"),
])
def test_bad_encodings_are_usage_errors(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_encodings_without_an_http_target_say_what_to_add(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "x"
    assert main(["run", "--targets", "grpc,inprocess", "--encodings", "json,binary",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --encodings compares HTTP request encodings")
    assert "Add flask, fastapi, lambda or an http:// --endpoint" in err
    assert not out.exists()


@pytest.fixture
def keep_affinity():  # type: ignore[no-untyped-def]
    before = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, before)  # `run` pins the process it runs in


@pytest.mark.usefixtures("keep_affinity")
def test_run_with_encodings_reports_them(tmp_path: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    out = tmp_path / "enc"
    assert main(["run", "--targets", "fake", "--encodings", "json,binary", "--scenario",
                 "smoke", "--out", str(out)]) == 0
    run = load_run(out)
    assert [t["name"] for t in run["targets"]] == ["fake-json", "fake-binary"]
    assert run["metadata"]["encoding"] == "json,binary"
    md = (out / "report.md").read_text()
    assert "## Payload encodings" in md
    assert "](charts/encodings.png)" in md
    assert "Requests use the `json` and `binary` encodings" in md
