"""The container images (docker/*.Dockerfile) as a user runs them: built from the wheelhouse
on the local base image (docker/build.sh, reused when up to date), started with the CPU set
and memory limit the harness gives a target and host networking, then health, parity with
the bundle called in-process, a short real Locust stage with no errors, the limits as
Docker and the kernel apply them, and every container removed by its ID, also when a test
fails. Also: docker-compose.yml validates with Debian's docker-compose.

Needs a Docker engine (docker/setup.sh starts one and makes the base image; `.ci/run` runs
it). Without one these tests skip, unless DEPLOYBENCH_REQUIRE_DOCKER=1 (CI sets it), which
makes that a failure. Image sizes and each image's `docker run` to first good answer are
left in build/test-artifacts/docker.json.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

import docker  # the SDK, not the repository's docker/ folder (it has no __init__)
from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from harness.parity import check_parity
from reports.schema import load_run
from targets.awslambda.frontdoor import COLD_HEADER
from targets.bundles.protocol import Prediction, serve_batch
from targets.errors import TargetError
from targets.flask.target import FlaskTarget
from targets.grpc.client import PREDICT_METHOD, GrpcClient
from targets.grpc.client import encode_request as grpc_request
from targets.runtimes.container import engine_problem
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import free_port
from targets.wire import codec
from targets.wire.httpclient import HttpClient
from tests.integration.stages import drive

pytestmark = [
    pytest.mark.integration, pytest.mark.docker,
    # The first build on a bare machine installs torch into an image: minutes (~3.5 on the
    # overlay2 storage driver here, more on vfs), all of it inside the first test.
    pytest.mark.timeout(1500),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
REQUIRE_ENV = "DEPLOYBENCH_REQUIRE_DOCKER"
TARGETS = ("flask", "fastapi", "grpc", "lambda")
TAG = os.environ.get("DEPLOYBENCH_IMAGE_TAG", "latest")
#: Every container this module starts carries it, with the pytest process's PID as value.
LABEL = "org.deploybench.test"
#: Memory per target CPU: what the docker runtime gives a target by default (Fargate's
#: minimum per vCPU, which the cost model prices). The Lambda container must hold the
#: emulator and the 4 environments the Locust stage's 4 users start (~150 MB each here).
MEMORY_MB_PER_CPU = 2048
READY_TIMEOUT_S = 120.0
#: Figures for build/test-artifacts/docker.json, filled in as the tests go.
FIGURES: dict[str, dict[str, Any]] = {}


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: the docker tests must run)")
    pytest.skip(f"{reason}; run docker/setup.sh, or set {REQUIRE_ENV}=1 to make this a failure")


def ours(engine: Any) -> list[Any]:
    """Containers this test session started (and has not removed yet)."""
    return list(engine.containers.list(all=True, filters={"label": f"{LABEL}={os.getpid()}"},
                                       ignore_removed=True))


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    problem = engine_problem()
    if problem is not None:
        _unavailable(problem)
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises several kinds for "no engine"
        _unavailable(f"no Docker engine answers ({exc})")
    # Containers of an earlier session that was killed before its teardown ran.
    for container in client.containers.list(all=True, filters={"label": LABEL},
                                            ignore_removed=True):
        owner = container.labels.get(LABEL, "")
        if not (owner.isdigit() and psutil.pid_exists(int(owner))):
            container.remove(force=True)
    yield client
    left = ours(client)
    for container in left:
        container.remove(force=True)
    client.close()
    assert not left, f"containers left behind: {[c.short_id for c in left]}"


@pytest.fixture(scope="module")
def images(engine: Any) -> Iterator[dict[str, Any]]:
    """docker/build.sh: builds the four images, or finds them up to date (seconds)."""
    started = time.perf_counter()
    done = subprocess.run([str(REPO / "docker" / "build.sh"), *TARGETS], capture_output=True,
                          text=True, timeout=1400, check=False, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    FIGURES["build"] = {"seconds": round(time.perf_counter() - started, 1),
                        "output": done.stdout.splitlines()[-len(TARGETS):]}
    found = {t: engine.images.get(f"deploybench-{t}:{TAG}") for t in TARGETS}
    for target, image in found.items():
        FIGURES.setdefault(target, {})["image_size_mb"] = round(image.attrs["Size"] / 1e6)
    yield found
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "docker.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


class ContainerExited(AssertionError):
    """The container stopped before it answered its health check."""


@dataclass
class Served:
    """A target's image running as a container, and how to talk to it."""

    name: str
    container: Any
    port: int
    healthy: Callable[[], bool]
    predict: Callable[[np.ndarray], list[Prediction]]
    close: Callable[[], None]
    cold_start: dict[str, float] = field(default_factory=dict)

    @property
    def host_pid(self) -> int:
        """The container's main process (the server's supervisor), as the host sees it."""
        self.container.reload()
        return int(self.container.attrs["State"]["Pid"])

    def load_spec(self, examples: list[np.ndarray], cpus: list[int]) -> dict[str, Any]:
        """What the load generator needs, as the target classes build it for a process."""
        watch = {"cpus": cpus, "watch_pids": [self.host_pid]}
        if self.name == "grpc":
            return {"protocol": "grpc", "address": f"127.0.0.1:{self.port}",
                    "method": PREDICT_METHOD, **watch,
                    "messages_b64": [base64.b64encode(grpc_request(e)).decode()
                                     for e in examples]}
        payloads = [dict(zip(("body", "headers"), codec.encode_request(e, "json"), strict=True))
                    for e in examples]
        spec = {"protocol": "http", "url": f"http://127.0.0.1:{self.port}", "path": "/predict",
                "payloads": payloads, **watch}
        return {**spec, "cold_header": COLD_HEADER} if self.name == "lambda" else spec


def _clients(target: str, port: int) -> tuple[Callable[[], bool],
                                                Callable[[np.ndarray], list[Prediction]],
                                                Callable[[], None]]:
    """Health check, predict and close for a target's protocol: gRPC's health service, or
    GET /healthz (through the Lambda emulator's Function URL front door, an invocation)."""
    if target == "grpc":
        grpc_client = GrpcClient(f"127.0.0.1:{port}")
        return (lambda: grpc_client.health() == "SERVING"), grpc_client.predict, \
            grpc_client.close
    http = HttpClient("127.0.0.1", port, timeout_s=30.0)

    def healthy() -> bool:
        try:
            return http.request("GET", "/healthz")[0] == 200
        except TargetError:
            return False

    def predict(batch: np.ndarray) -> list[Prediction]:
        status, body = http.request("POST", "/predict", *codec.encode_request(batch, "json"))
        if status != 200:
            raise TargetError(f"{target} container answered {status}: {body[:200]!r}")
        return codec.decode_predictions(body)

    return healthy, predict, http.close


@contextlib.contextmanager
def run(engine: Any, target: str, cpus: list[int], arguments: list[str],
        example: np.ndarray) -> Iterator[Served]:
    """`docker run` the target's image with the harness's limits; yields once it answered
    its health check and one prediction; removes the container by ID whatever happens."""
    port = free_port()
    started = time.perf_counter()
    container = engine.containers.run(
        f"deploybench-{target}:{TAG}", ["--port", str(port), *arguments], detach=True,
        network_mode="host", cpuset_cpus=format_cpus(cpus),
        mem_limit=f"{MEMORY_MB_PER_CPU * len(cpus)}m", labels={LABEL: str(os.getpid())})
    healthy, predict, close = _clients(target, port)
    served = Served(target, container, port, healthy, predict, close)
    try:
        created = time.perf_counter()
        while not served.healthy():
            container.reload()
            if container.status != "running":
                raise ContainerExited(f"{target} container {container.short_id} exited "
                                      f"({container.status}):\n"
                                      f"{container.logs().decode(errors='replace')[-2000:]}")
            assert time.perf_counter() - started < READY_TIMEOUT_S, \
                f"{target} container not healthy after {READY_TIMEOUT_S:.0f} s"
            time.sleep(0.05)
        ready = time.perf_counter()
        served.predict(example)
        served.cold_start = {"run_s": created - started, "healthy_s": ready - started,
                             "first_answer_s": time.perf_counter() - started}
        yield served
    finally:
        served.close()
        container.remove(force=True)
        assert container.id not in {c.id for c in ours(engine)}


@pytest.fixture(scope="module", params=TARGETS)
def served(request: pytest.FixtureRequest, engine: Any, images: dict[str, Any],
           cpus: CpuPlan, digits) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    target: str = request.param
    with run(engine, target, list(cpus.target), [], digits.example_requests()[0]) as running:
        FIGURES.setdefault(target, {})["cold_start_s"] = {
            k: round(v, 2) for k, v in running.cold_start.items()}
        yield running


def test_answers_soon_after_docker_run(served: Served) -> None:
    # docker run to health check passing, then to the first prediction's answer: the
    # model was trained into the image at build time, so no training happens here.
    assert 0 < served.cold_start["healthy_s"] <= served.cold_start["first_answer_s"]
    assert served.cold_start["first_answer_s"] < 60


def test_parity_with_in_process(served: Served, digits) -> None:  # type: ignore[no-untyped-def]
    examples = digits.example_requests()
    reference = [serve_batch(digits, e) for e in examples]
    result = check_parity(served, examples, reference)  # type: ignore[arg-type]
    assert result["ok"]
    assert result["examples"] == 64
    assert result["max_abs_diff"] <= 1e-5


def test_locust_stage_has_no_errors(served: Served, cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                    tmp_path: Path) -> None:
    spec = served.load_spec(digits.example_requests(), list(cpus.target))
    [raw] = drive(served.name, spec, list(cpus.loadgen), tmp_path).stages
    stage = summarize_stage(raw)
    assert stage["errors"] == 0, stage["error_kinds"]
    assert stage["requests"] >= 200
    # The container's processes are host processes: the load generator measured them.
    assert 0 < (stage["target_cpu_percent"] or 0) <= 105
    FIGURES.setdefault(served.name, {})["locust_2s_window"] = {
        "requests": stage["requests"], "rps": round(stage["rps"]),
        "p50_ms": round(stage["latency_ms"]["p50"], 2),
        "p99_ms": round(stage["latency_ms"]["p99"], 2)}


def test_limits_are_applied(served: Served, cpus: CpuPlan) -> None:
    served.container.reload()
    host = served.container.attrs["HostConfig"]
    memory = MEMORY_MB_PER_CPU * len(cpus.target) * 2**20
    assert host["CpusetCpus"] == format_cpus(list(cpus.target))
    assert host["Memory"] == memory
    assert host["NetworkMode"] == "host"
    # As the kernel applies them: every server process on the target CPUs only...
    root = psutil.Process(served.host_pid)
    for proc in [root, *root.children(recursive=True)]:
        assert sorted(proc.cpu_affinity()) == sorted(cpus.target)
    # ...and the container's memory cgroup capped (cgroup v1 or v2).
    code, out = served.container.exec_run(
        ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                     "/sys/fs/cgroup/memory.max 2>/dev/null"])
    assert int(out.split()[0]) == memory, (code, out)


def test_runs_as_an_unprivileged_user(served: Served) -> None:
    assert psutil.Process(served.host_pid).uids().real == 65534


def test_a_container_that_dies_is_reported_and_removed(engine: Any, images: dict[str, Any],
                                                        cpus: CpuPlan, digits) -> None:  # type: ignore[no-untyped-def]
    example = digits.example_requests()[0]
    before = {c.id for c in ours(engine)}  # a module-scoped one may still run
    with pytest.raises(ContainerExited, match="unknown bundle"), \
            run(engine, "flask", list(cpus.target), ["--bundle", "nope"], example):
        pass
    assert {c.id for c in ours(engine)} == before


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """build/wheelhouse/, the compose file's build context (docker-compose checks it exists)."""
    done = subprocess.run([str(REPO / "docker" / "wheelhouse.sh")], capture_output=True,
                          text=True, timeout=600, check=False, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return REPO / "build" / "wheelhouse"


def test_compose_file_validates(wheelhouse: Path) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        _unavailable("no docker-compose (apt-get install docker-compose)")
    assert compose is not None
    done = subprocess.run([compose, "-f", str(REPO / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    services = subprocess.run(
        [compose, "-f", str(REPO / "docker-compose.yml"), "config", "--services"],
        capture_output=True, text=True, timeout=60, check=True, cwd=REPO).stdout.split()
    assert set(services) == {"flask", "fastapi", "grpc", "lambda", "locust-master",
                             "locust-worker", "loadgen-worker"}
    # Every served target: the harness's CPU set and memory limit, bound to 127.0.0.1.
    config = yaml.safe_load(done.stdout)["services"]
    for name in ("flask", "fastapi", "grpc", "lambda"):
        service = config[name]
        assert str(service["cpuset"]) == "1", name
        assert service["network_mode"] == "host", name
        assert service["command"][-2:] == ["--host", "127.0.0.1"], name
        assert service["mem_limit"], name
    # Lambda: every environment of its default concurrency gets its memory size.
    assert _bytes(config["lambda"]["mem_limit"]) == 10 * 1769 * 2**20
    assert _bytes(config["flask"]["mem_limit"]) == _bytes(config["fastapi"]["mem_limit"]) \
        == _bytes(config["grpc"]["mem_limit"]) == 2 * 2**30
    assert "127.0.0.1" in config["locust-master"]["command"]


def _bytes(limit: object) -> int:
    """A compose memory limit (bytes, or 2g / 17690m as written) in bytes."""
    text = str(limit).lower()
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def test_a_worker_in_a_container_joins_a_run(engine: Any, images: dict[str, Any],
                                             cpus: CpuPlan, tmp_path: Path) -> None:
    """docker-compose.yml's loadgen-worker: deploybench's own load-generator worker in the
    flask image, in a container of its own (its own PID namespace and file system, as on
    another machine), joins a run that waits for one remote worker; its samples are merged
    into that run's, and it exits by itself after the run's last target."""
    master = f"127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    with FlaskTarget("digits", list(cpus.target), "json",
                     log_path=tmp_path / "flask.log") as flask:
        container = engine.containers.run(
            f"deploybench-flask:{TAG}", ["--master", master],
            entrypoint=["/opt/deploybench/bin/deploybench", "loadgen-worker"], detach=True,
            network_mode="host", cpuset_cpus=format_cpus(list(cpus.loadgen)),
            labels={LABEL: str(os.getpid())})
        try:
            done = subprocess.run(
                [sys.executable, "-m", "harness", "run", "--bundle", "digits", "--scenario",
                 "smoke", "--out", str(out), "--loadgen-remote-workers", "1",
                 "--loadgen-master", master, "--endpoint", f"k8s=http://{flask.address}"],
                capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
            assert done.returncode == 0, done.stderr[-3000:]
            assert container.wait(timeout=30)["StatusCode"] == 0, container.logs()[-2000:]
        finally:
            container.remove(force=True)
    target = load_run(out)["targets"][0]
    assert target["status"] == "ok", target["error"]
    remote = [w for w in target["loadgen"]["workers"] if not w["local"]]
    assert len(remote) == 1
    for stage in target["stages"]:
        assert stage["errors"] == 0
        assert len(stage["worker_samples"]) == 2
        if stage["concurrency"] >= 2:
            assert stage["worker_samples"][remote[0]["index"]] > 0
