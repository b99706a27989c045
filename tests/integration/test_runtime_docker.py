"""`run --runtime docker`: the harness runs a served target in its container, with the
process runtime's CPUs and a memory limit, measures it, and leaves no container behind.

Needs a Docker engine and the deploybench-flask and -fastapi images (docker/setup.sh and
docker/build.sh; `.ci/run` runs both). Without an engine it skips, unless
DEPLOYBENCH_REQUIRE_DOCKER=1 (CI), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reports.schema import load_run
from targets.runtimes.container import (
    OWNER_LABEL,
    DockerUnavailable,
    _boot_id,
    client,
    owner_label,
    remove_orphans,
)
from tests.integration.test_user_bundle import HANDLER, TINY

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def engine() -> object:
    try:
        return client()
    except DockerUnavailable as exc:
        if os.environ.get("DEPLOYBENCH_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{exc} (DEPLOYBENCH_REQUIRE_DOCKER=1: the docker tests must run)")
        pytest.skip(str(exc))


def ours(engine: object) -> list[object]:
    # ignore_removed: a reaper may remove a container between the listing and its
    # inspection (which the SDK would report as 404 Not Found).
    return list(engine.containers.list(  # type: ignore[attr-defined]
        all=True, filters={"label": "org.deploybench.target"}, ignore_removed=True))


@pytest.mark.parametrize("name", ["flask", "fastapi"])
def test_an_http_server_in_a_container_end_to_end(engine: object, tmp_path: Path,
                                                  name: str) -> None:
    before = {c.id for c in ours(engine)}  # type: ignore[attr-defined]
    out = tmp_path / "run"
    # smoke's stages, after one cold start: a new container, launch to first answer.
    scenario = tmp_path / "smoke-cold.yaml"
    smoke = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"
    scenario.write_text(smoke.read_text() + "\ncold_starts: 1\n")
    done = subprocess.run(  # a relative --out, as users write it
        [sys.executable, "-m", "harness", "run", "--runtime", "docker", "--targets", name,
         "--scenario", str(scenario), "--container-memory-mb", "1536", "--out", "run"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(out)
    assert run["metadata"]["runtime"] == "docker"
    flask = run["targets"][0]  # flask or fastapi
    assert flask["status"] == "ok", flask["error"]
    assert flask["parity"] is not None
    assert flask["parity"]["ok"]
    d = flask["describe"]
    assert d["runtime"] == "docker (host network)"
    # As docker inspect shows them, not as asked.
    assert d["limits_from"] == "docker inspect"
    assert d["memory_limit_mb"] == 1536
    assert d["cpuset"] == run["metadata"]["target_cpus"]
    assert d["network"] == "host"
    assert d["image"] == f"deploybench-{name}:latest"
    assert d["image_size_mb"] > 100
    assert d["startup_s"] > 0
    assert d["container_memory_mb"] > 50
    cold = flask["cold_starts"]
    assert cold["supported"]
    assert len(cold["samples"]) == 1
    assert cold["samples"][0]["total_s"] > 0
    for stage in flask["stages"]:
        assert stage["errors"] == 0
        assert stage["rps"] > 0
        # Its processes are host processes: CPU and memory are read as for a process.
        assert stage["target_cpu_percent"] is not None
        assert stage["target_cpu_percent"] > 0
        assert stage["target_rss_mb"] > 50
    report = (out / "report.md").read_text()
    assert "docker (host network)" in report
    # The report itself says what ran and under which limits, not only run.json.
    assert f"image deploybench-{name}:latest ({d['image_id']}" in report
    assert f"container limits (docker inspect): cpuset " \
        f"{','.join(map(str, d['cpuset']))}, memory 1,536 MB, network host" in report
    # The images are brought up to date before the run, saying so.
    assert f"docker: bringing deploybench-{name}:latest up to date" in done.stderr
    assert "docker: images ready in" in done.stderr
    # Stopped and removed by ID: nothing of this run is left.
    assert {c.id for c in ours(engine)} == before  # type: ignore[attr-defined]


def test_a_user_bundle_in_containers(engine: object, tmp_path: Path) -> None:
    """The user's model and handler live in two folders of the host: each is mounted
    read-only at its own path into every container, and the containers answer as the
    orchestrator's own copy does; a redeploy starts a second container beside the first."""

    before = {c.id for c in ours(engine)}  # type: ignore[attr-defined]
    models, code = tmp_path / "models", tmp_path / "code"
    models.mkdir()
    code.mkdir()
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    program = torch.export.export(net, (torch.zeros(2, 1, 8, 8),),
                                  dynamic_shapes={"input": {0: torch.export.Dim("b")}})
    torch.export.save(program, str(models / "linear.pt2"))
    (code / "handler.py").write_text(HANDLER)
    (tmp_path / "tiny.yaml").write_text(TINY)  # with a redeploy: a second container
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--runtime", "docker", "--targets",
         "flask,grpc,lambda", "--model", str(models / "linear.pt2"), "--handler",
         str(code / "handler.py"), "--scenario", str(tmp_path / "tiny.yaml"), "--out",
         str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    run = load_run(tmp_path / "run")
    assert run["bundle"]["model_format"] == "torch.export"
    for target in run["targets"]:
        assert target["status"] == "ok", target["error"]
        assert target["parity"]["ok"]
        assert target["parity"]["examples"] == 6
        assert target["describe"]["image"].startswith("deploybench-")
        assert target["redeploys"]["samples"][0]["total_s"] > 0
    assert {c.id for c in ours(engine)} == before  # type: ignore[attr-defined]


def test_containers_of_a_killed_run_are_removed(engine: object) -> None:
    """An orchestrator that was SIGKILLed cannot stop its containers; the next run does,
    and leaves those of a live one alone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = engine.containers.run  # type: ignore[attr-defined]
    orphan = run("deploybench-base:bookworm", ["sleep", "300"], detach=True,
                 network_mode="host",
                 labels={OWNER_LABEL: f"{_boot_id()}:{gone.pid}:0.00",
                         "org.deploybench.target": "test"})
    alive = run("deploybench-base:bookworm", ["sleep", "300"], detach=True,
                network_mode="host",
                labels={OWNER_LABEL: owner_label(), "org.deploybench.target": "test"})
    try:
        removed = remove_orphans(engine)
        assert orphan.short_id in removed
        assert alive.short_id not in removed
        left = {c.id for c in ours(engine)}  # type: ignore[attr-defined]
        assert orphan.id not in left
        assert alive.id in left
    finally:
        with contextlib.suppress(Exception):
            alive.remove(force=True)
        with contextlib.suppress(Exception):  # removed already when the test passed
            orphan.remove(force=True)


def _run_until_its_container_starts(engine: object, tmp_path: Path
                                    ) -> tuple[subprocess.Popen[bytes], set[str]]:
    """`deploybench run --runtime docker` of flask (smoke, --out tmp_path/run, stderr in
    tmp_path/stderr.txt), once its container exists: the process and that container's
    ID. The run is killed if its container never appears."""
    before = {c.id for c in ours(engine)}  # type: ignore[attr-defined]
    with (tmp_path / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--runtime", "docker", "--targets",
             "flask", "--scenario", "smoke", "--out", str(tmp_path / "run")],
            stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 180
    started: set[str] = set()
    while not started and time.monotonic() < deadline and proc.poll() is None:
        started = {c.id for c in ours(engine)} - before  # type: ignore[attr-defined]
        time.sleep(0.2)
    if not started:
        proc.kill()
        proc.wait()
        pytest.fail("the run never started its container: "
                    + (tmp_path / "stderr.txt").read_text()[-3000:])
    return proc, started


def test_a_run_killed_outright_leaves_no_container(engine: object, tmp_path: Path) -> None:
    """SIGKILL (or a second Ctrl-C) gives the orchestrator no time to stop anything: its
    servers die with it (PR_SET_PDEATHSIG), and each container's reaper removes it."""
    proc, started = _run_until_its_container_starts(engine, tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while started & {c.id for c in ours(engine)} and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.2)
        assert not started & {c.id for c in ours(engine)}  # type: ignore[attr-defined]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_its_container(engine: object, tmp_path: Path,
                                                how: str) -> None:
    """Ctrl-C or SIGTERM while a container serves: the container is stopped and removed
    by the time the run exits, which writes what it measured as partial and exits
    non-zero."""
    proc, started = _run_until_its_container_starts(engine, tmp_path)
    try:
        time.sleep(3.0)  # starting, checking parity or under load: all must stop it
        signum = getattr(signal, how)
        proc.send_signal(signum)
        proc.wait(timeout=60)
        stderr = (tmp_path / "stderr.txt").read_text()
        assert proc.returncode == 128 + signum, stderr[-3000:]
        assert not started & {c.id for c in ours(engine)}  # type: ignore[attr-defined]
        run = load_run(tmp_path / "run")
        assert run["status"] == "partial"
        assert run["stopped_by"].startswith(f"it was interrupted ({how})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
