"""The registry of deployments: one entry says everything a deployment is."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path

from harness.cpus import CpuPlan
from harness.runner import TARGETS, RunPlan, make_target
from scenarios import catalogue
from targets import registry
from targets.fastapi.target import FastapiOptions
from targets.flask.target import FlaskOptions
from targets.rayserve.target import RayServeOptions, RayServeTarget
from targets.runtimes.container import DockerRuntime
from targets.runtimes.process import LOCAL

REPO = Path(__file__).resolve().parents[2]


def test_run_measures_the_built_in_deployments_in_report_order() -> None:
    assert TARGETS == registry.BUILT_IN == ("inprocess", "flask", "fastapi", "grpc",
                                                  "lambda")
    assert registry.FOR_TESTS == ("fake",)


def test_every_server_entry_point_serves_and_every_image_has_a_dockerfile() -> None:
    for deployment in registry.DEPLOYMENTS.values():
        if deployment.server is not None:
            assert callable(importlib.import_module(deployment.server).serve), deployment.name
        if deployment.image:
            assert (REPO / "docker" / f"{deployment.name}.Dockerfile").is_file()
    assert registry.WITH_IMAGE == ("flask", "fastapi", "grpc", "lambda")


def test_options_come_from_run_values_named_after_the_deployment() -> None:
    flask = registry.DEPLOYMENTS["flask"]
    values = {"flask_workers": 3, "flask_threads": None, "grpc_workers": 7}
    assert flask.options_from(values) == FlaskOptions(workers=3)
    fastapi = registry.DEPLOYMENTS["fastapi"]
    values = {"flask_workers": 3, "fastapi_threads": 2, "fastapi_pool": "anyio"}
    assert fastapi.options_from(values) == FastapiOptions(threads=2, pool="anyio")


def test_run_options_reach_the_fastapi_server(tmp_path: Path) -> None:
    plan = RunPlan(targets=("fastapi",), bundle="digits", scenario=catalogue.load("smoke"),
                   cpus=CpuPlan(target=(1,), loadgen=(0,)), out_dir=tmp_path,
                   fastapi_workers=1, fastapi_threads=2, fastapi_pool="sync")
    target = make_target("fastapi", plan, "json", tmp_path)
    assert (getattr(target, "workers", None), getattr(target, "threads", None)) == (1, 2)
    assert getattr(target, "server_arguments", list)() == ["--pool", "sync"]


def _plan(tmp_path: Path, docker: DockerRuntime | None = None) -> RunPlan:
    return RunPlan(targets=("inprocess", "flask"), bundle="digits",
                   scenario=catalogue.load("smoke"), cpus=CpuPlan(target=(1,), loadgen=(0,)),
                   out_dir=tmp_path, flask_workers=2, docker=docker)


def test_the_runtime_is_handed_to_served_targets(tmp_path: Path) -> None:
    docker = DockerRuntime(tag="t")
    flask = make_target("flask", _plan(tmp_path, docker), "json", tmp_path)
    assert getattr(flask, "runtime", None) is docker
    assert getattr(flask, "workers", None) == 2
    local = make_target("flask", _plan(tmp_path), "json", tmp_path)
    assert getattr(local, "runtime", None) is LOCAL
    # In-process has no server to run anywhere else.
    assert not hasattr(make_target("inprocess", _plan(tmp_path, docker), "json", tmp_path),
                       "runtime")


def test_wires_follow_the_registry() -> None:
    assert registry.wire_of("grpc", None).of("json") == "protobuf"
    assert registry.wire_of("inprocess", None).of("json") is None
    assert registry.wire_of("flask", None).per_encoding
    assert registry.wire_of("k8s", "http://10.0.0.5:8000").per_encoding
    assert registry.wire_of("fn", "lambda://eu-west-1/fn").of("binary") == "binary"
    assert not registry.wire_of("fn", "lambda://eu-west-1/fn").per_encoding


def test_rayserve_is_run_only_when_named() -> None:
    assert "rayserve" in registry.RUNNABLE
    assert "rayserve" not in registry.BUILT_IN
    assert "rayserve" not in registry.WITH_IMAGE  # a local process only
    rayserve = registry.DEPLOYMENTS["rayserve"]
    assert rayserve.protocol == "http"
    assert rayserve.wire.per_encoding
    assert rayserve.options_from({"rayserve_workers": 2, "flask_workers": 3}) \
        == RayServeOptions(workers=2)


def test_rayserve_gets_its_options_and_the_run_s_limits(tmp_path: Path) -> None:
    plan = RunPlan(targets=("rayserve",), bundle="digits", scenario=catalogue.load("smoke"),
                   cpus=CpuPlan(target=(1, 2), loadgen=(0,)), out_dir=tmp_path,
                   rayserve_workers=1, rayserve_threads=3)
    target = make_target("rayserve", plan, "binary", tmp_path)
    assert isinstance(target, RayServeTarget)
    assert (target.workers, target.threads, target.encoding) == (1, 3, "binary")
    assert target.server_arguments() == []  # no batching unless asked


def test_a_missing_requirement_names_the_extra_that_installs_it() -> None:
    rayserve = registry.DEPLOYMENTS["rayserve"]
    assert rayserve.requires == ("ray", "ray.serve")
    assert rayserve.extra == "ray"
    absent = replace(rayserve, requires=("deploybench_no_such_module.sub",))
    assert absent.missing() == ("rayserve needs deploybench_no_such_module.sub, which is not "
                                "installed. Install it with `pip install -e '.[ray]'`")
    assert registry.DEPLOYMENTS["flask"].missing() is None
