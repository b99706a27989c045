"""`run --batching`: the option's syntax, which results are planned and how they are
named (with --encodings too), what the builders are handed, and what the runner records
from a batched target's batch log."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest

from harness.cli import build_parser, main
from harness.cpus import CpuPlan
from harness.encodings import Batching, Measurement, measurements, unbatchable
from harness.loadgen.analysis.batches import summarize_batches
from harness.loadgen.simulated import EPOCH, SimulatedLoadGenerator
from harness.options import parse_batching
from harness.runner import Runner, RunPlan, make_target
from reports.schema import load_run
from scenarios.catalogue import Scenario
from targets.base import Target
from targets.batching import BatchingSpec
from targets.registry import DEPLOYMENTS

SCENARIO = Scenario(name="unit", description="", concurrency=(1, 4), warmup_s=0.5,
                    stability_windows=1, max_windows=1, window_s=2.0, cooldown_s=0.5,
                    drain_timeout_s=1.0, sha256="0" * 64, path="unit.yaml")
SPEC = BatchingSpec(8, 1.0)
BOTH = Batching(SPEC, unbatched=True)


@pytest.mark.parametrize(("text", "expected"), [
    ("max_batch=8,max_wait_ms=1", Batching(SPEC)),
    ("both", Batching(BatchingSpec(), unbatched=True)),
    ("both,max_batch=8,max_wait_ms=1", BOTH),
    (" Both , max_wait_ms=0", Batching(BatchingSpec(16, 0.0), unbatched=True)),
    ("max_batch=32", Batching(BatchingSpec(32))),
])
def test_batching_option_parses(text: str, expected: Batching) -> None:
    assert parse_batching(text) == expected
    assert parse_batching(str(expected)) == expected  # as recorded in run.json
    assert build_parser().parse_args(["run", "--batching", text]).batching == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "give max_batch=N,max_wait_ms=M, or both"),
    ("max_batch=0", "max_batch must be at least 1"),
    ("both,max_wait_ms=-1", "max_wait_ms must be between 0 and 1000"),
    ("max_batch=8,both", "'both' comes first, once"),
    ("batch=8", "bad batching setting 'batch=8'"),
    ("max_batch=two", "max_batch is a whole number"),
])
def test_bad_batching_is_refused_with_what_to_write(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_batching(text)


def test_a_bad_batching_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "--batching", "max_batch=0"])
    assert info.value.code == 2
    assert "argument --batching: --batching: max_batch must be at least 1" in \
        capsys.readouterr().err


def test_only_batching_deployments_are_batched() -> None:
    assert {n for n, d in DEPLOYMENTS.items() if d.batching} >= {"flask", "grpc"}
    assert not DEPLOYMENTS["inprocess"].batching
    assert not DEPLOYMENTS["lambda"].batching
    planned = measurements(("inprocess", "flask", "grpc", "lambda"), {}, ("json",), BOTH)
    assert [(m.name, m.deployment, m.batching) for m in planned] == [
        ("inprocess", "inprocess", None),
        ("flask", "flask", None), ("flask+batch", "flask", SPEC),
        ("grpc", "grpc", None), ("grpc+batch", "grpc", SPEC),
        ("lambda", "lambda", None)]
    assert unbatchable(("inprocess", "flask", "grpc", "lambda"), {}) == ["inprocess",
                                                                         "lambda"]


def test_batched_only_replaces_the_unbatched_result() -> None:
    planned = measurements(("flask", "inprocess"), {}, ("json",), Batching(SPEC))
    assert [m.name for m in planned] == ["flask+batch", "inprocess"]


def test_batching_composes_with_encodings() -> None:
    planned = measurements(("flask", "grpc"), {}, ("json", "binary"), BOTH)
    assert planned == [
        Measurement("flask-json", "flask", "json", "json"),
        Measurement("flask-json+batch", "flask", "json", "json", SPEC),
        Measurement("flask-binary", "flask", "binary", "binary"),
        Measurement("flask-binary+batch", "flask", "binary", "binary", SPEC),
        Measurement("grpc", "grpc", "json", "protobuf"),
        Measurement("grpc+batch", "grpc", "json", "protobuf", SPEC)]


def test_endpoints_are_never_batched() -> None:
    endpoints = {"flask": "http://10.0.0.5:8000", "rpc": "grpc://10.0.0.6:50051"}
    planned = measurements(("flask", "rpc"), endpoints, ("json",), BOTH)
    assert [(m.name, m.batching) for m in planned] == [("flask", None), ("rpc", None)]
    assert unbatchable(("flask", "rpc"), endpoints) == ["flask", "rpc"]


def plan(out: Path, targets: tuple[str, ...], batching: Batching | None = BOTH,
         encodings: tuple[str, ...] = ()) -> RunPlan:
    return RunPlan(targets=targets, bundle="digits", scenario=SCENARIO,
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=out, batching=batching,
                   encodings=encodings)


def test_the_builders_hand_the_spec_to_the_batched_result_only(tmp_path: Path) -> None:
    p = plan(tmp_path, ("flask", "grpc"), encodings=("json", "binary"))
    for name, expected in (("flask-binary+batch", SPEC), ("flask-binary", None),
                           ("grpc+batch", SPEC), ("grpc", None)):
        target = make_target(name, p, "binary", tmp_path)
        assert target.name == name
        assert getattr(target, "batching", "absent") == expected
        assert getattr(target, "log_path", None) == tmp_path / f"{name}.log"


#: A made-up batch log over the simulated clock: a forward pass every 10 ms, serving
#: 1, 2, 3 or 4 requests in turn, for the first 600 simulated seconds.
LOG_TIMES = EPOCH + np.arange(0, 600, 0.01)
LOG_SIZES = 1 + np.arange(len(LOG_TIMES)) % 4


def write_log(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    half = len(LOG_TIMES) // 2  # two server processes, one file each
    for pid, rows in ((101, slice(0, half)), (102, slice(half, None))):
        (folder / f"batches-{pid}.log").write_text("".join(
            f"{t:.6f} {n} {n}\n" for t, n in zip(LOG_TIMES[rows], LOG_SIZES[rows],
                                                strict=True)))


def batch_logging_factory(folder: Path):  # type: ignore[no-untyped-def]
    """make_target, with the fake's batched results given ``folder`` as their batch log
    (the fake runs no server to write one)."""
    def factory(name: str, p: RunPlan, encoding: str, log_dir: Path) -> Target:
        target = make_target(name, p, encoding, log_dir)
        if name.endswith("+batch"):
            target.batch_log_dir = folder  # type: ignore[attr-defined]
        return target
    return factory


def test_runner_counts_each_stages_batches_from_the_log(tmp_path: Path) -> None:
    folder = tmp_path / "batch-log"
    write_log(folder)
    out = tmp_path / "run"
    run = Runner(plan(out, ("fake",)), SimulatedLoadGenerator(),
                 target_factory=batch_logging_factory(folder)).run()
    assert run["status"] == "complete"
    assert run["metadata"].get("batching") == "both,max_batch=8,max_wait_ms=1"
    assert run["metadata"].get("results_planned") == ["fake", "fake+batch"]
    plain, batched = run["targets"]
    assert (plain["name"], plain.get("batching")) == ("fake", None)
    assert (batched["name"], batched.get("batching")) == ("fake+batch", str(SPEC))
    assert batched.get("deployment") == "fake"
    assert all(s["batching"] is None for s in plain["stages"])
    assert batched["stages"]
    for stage in batched["stages"]:
        start, end = stage["window_start"], stage["window_end"]
        inside = (start <= LOG_TIMES) & (end > LOG_TIMES)
        block = stage["batching"]
        assert block is not None
        sizes = {str(n): int((LOG_SIZES[inside] == n).sum()) for n in (1, 2, 3, 4)}
        assert block["sizes"] == {k: v for k, v in sizes.items() if v}
        assert block["batches"] == int(inside.sum()) > 0
        assert block["requests"] == int(LOG_SIZES[inside].sum())
        assert block["mean_size"] == pytest.approx(LOG_SIZES[inside].mean())
    assert load_run(out)["targets"][1]["stages"][0]["batching"] == batched["stages"][0][
        "batching"]


def test_a_batched_target_without_a_batch_log_fails_instead_of_passing_as_batched(
        tmp_path: Path) -> None:
    run = Runner(plan(tmp_path, ("fake",), Batching(SPEC)), SimulatedLoadGenerator()).run()
    [result] = run["targets"]
    assert (result["name"], result["status"]) == ("fake+batch", "failed")
    assert "keeps no batch log" in (result["error"] or "")
    assert result["stages"] == []


def test_a_window_with_no_batches_has_no_mean() -> None:
    log = np.array([[10.0, 3, 3], [20.0, 1, 1]])
    assert summarize_batches(log, 11.0, 19.0) == {"sizes": {}, "batches": 0, "requests": 0,
                                                  "mean_size": None}
    assert summarize_batches(log, 10.0, 20.0) == {"sizes": {"3": 1}, "batches": 1,
                                                  "requests": 3, "mean_size": 3.0}


def test_batching_without_a_target_that_can_batch_says_what_to_add(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "x"
    before = os.sched_getaffinity(0)
    try:
        assert main(["run", "--targets", "inprocess,lambda", "--batching", "both",
                     "--out", str(out)]) == 1
    finally:
        os.sched_setaffinity(0, before)
    err = capsys.readouterr().err
    assert err.startswith("error: --batching batches in deploybench's own servers")
    assert "Add flask, fastapi, grpc or rayserve to --targets" in err
    assert not out.exists()
