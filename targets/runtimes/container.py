"""The docker runtime (``run --runtime docker``): a served target's server in a container.

The same server, started with the same arguments as the process runtime, in the image
``deploybench-<target>:<tag>`` (docker/<target>.Dockerfile, built by docker/build.sh from
a local wheelhouse), through the Docker Engine API (the ``docker`` SDK):

* limits equal to the process runtime's budget: ``--cpuset-cpus`` = the target CPUs, and
  a memory limit (``--container-memory-mb``, default 2 GB per CPU: Fargate's minimum per
  vCPU, which the cost model prices);
* host networking (the server binds 127.0.0.1, as in the process runtime) or a bridge
  network with the port published on 127.0.0.1 only;
* the host's bundle cache mounted read-only (the orchestrator prepared the bundle there,
  so every deployment serves the very same artefacts), a user bundle's folders read-only
  at ``/deploybench/user/N`` (its spec rewritten to name them there), and the run's log
  folder for the Lambda emulator's REPORT records;
* its processes are ordinary host processes: the harness reads their CPU and memory by
  host PID (the container's main process and its descendants), as for the process runtime,
  and Docker's own memory figure (cgroup usage) beside;
* stopped and removed by container ID. A reaper process (:mod:`targets.runtimes.reaper`) removes
  it if the orchestrator is killed outright; and each container is labelled with the
  orchestrator's PID, so any container whose orchestrator is gone is removed at the next
  run too.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil

from targets.bundles.user import container_view
from targets.errors import TargetError, TargetStartError
from targets.files import CACHE_ENV, cache_dir
from targets.runtimes.cpuset import parse_cpus
from targets.runtimes.process import python_module_command

OWNER_LABEL = "org.deploybench.owner_pid"
#: One container's own label: what its reaper looks it up by.
INSTANCE_LABEL = "org.deploybench.instance"
NETWORKS = ("host", "bridge")
#: Memory per target CPU when not given: Fargate's minimum per vCPU (the cost model's).
DEFAULT_MEMORY_MB_PER_CPU = 2048
SOURCE_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.05
#: Images brought up to date by this process already.
_BUILT: set[str] = set()


class DockerUnavailable(TargetError):
    """No Docker engine answers, or the SDK is missing."""


def _sdk() -> Any:
    """The docker SDK (imported by name: the repository's docker/ folder of Dockerfiles
    would otherwise pass for it in type checks)."""
    sdk = importlib.import_module("docker")
    if not hasattr(sdk, "from_env"):
        raise ImportError("the docker SDK is not installed")
    return sdk


def engine_problem() -> str | None:
    """Why no Docker engine answers at its Unix socket, or None (a TCP ``DOCKER_HOST`` is
    left to the SDK). Checked before the SDK is asked: it leaks its socket object when
    nothing listens (docker 7.1-7.2), and a stopped engine leaves its socket file."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5.0)
            sock.connect(host.removeprefix("unix://"))
    except OSError as exc:
        return f"no Docker engine answers at {host} ({exc})"
    return None


def client() -> Any:
    try:
        docker = _sdk()
    except ImportError as exc:
        raise DockerUnavailable("--runtime docker needs the docker SDK: pip install "
                                "'docker>=7.1'") from exc
    problem = engine_problem()
    if problem is not None:
        raise DockerUnavailable(f"{problem}. Start one (docker/setup.sh does, on a machine "
                                "like CI's) or use --runtime process")
    engine = None
    try:
        engine = docker.from_env()
        engine.ping()
    except Exception as exc:  # the SDK raises several kinds for "no engine"
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.close()
        raise DockerUnavailable(
            f"no Docker engine answers ({exc}). Start one (docker/setup.sh does, on a machine "
            "like CI's) or use --runtime process") from exc
    return engine


def owner_label(pid: int | None = None) -> str:
    """Who started a container: this machine's boot, a PID and that process's start time
    (a PID alone may be reused by an unrelated process)."""
    pid = os.getpid() if pid is None else pid
    return f"{_boot_id()}:{pid}:{psutil.Process(pid).create_time():.2f}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _owner_alive(label: str) -> bool | None:
    """True/False for a label of this machine's current boot; None for another machine's
    or boot's (left alone: it may belong to a live run elsewhere)."""
    boot, _, rest = label.partition(":")
    pid_text, _, started = rest.partition(":")
    if boot != _boot_id() or not pid_text.isdigit():
        return None
    try:
        return f"{psutil.Process(int(pid_text)).create_time():.2f}" == started
    except psutil.NoSuchProcess:
        return False


def remove_orphans(engine: Any) -> list[str]:
    """Remove containers whose deploybench orchestrator (on this machine, this boot) is
    gone: it was SIGKILLed before it could stop them."""
    removed = []
    # ignore_removed: a container removed between the listing and its inspection (by its
    # own run, or a reaper) is not an error.
    for container in engine.containers.list(all=True, filters={"label": OWNER_LABEL},
                                            ignore_removed=True):
        if _owner_alive(container.labels.get(OWNER_LABEL, "")) is False:
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed.append(container.short_id)
    return removed


@dataclass(frozen=True)
class DockerRuntime:
    """How containers are run: image tag, memory limit, network."""

    tag: str = "latest"
    memory_mb: int | None = None
    network: str = "host"
    #: run.json's ``metadata.runtime``.
    kind: ClassVar[str] = "docker"

    def image_name(self, target: str) -> str:
        return f"deploybench-{target}:{self.tag}"

    def prepare(self, targets: list[str], say: Callable[[str], None]) -> None:
        """Bring the images of ``targets`` up to date before a run starts, saying so: the
        first build takes about a minute, which would otherwise pass in silence inside
        the first target's start."""
        script = SOURCE_ROOT / "docker" / "build.sh"
        names = [t for t in targets if self.image_name(t) not in _BUILT]
        if not names or not script.exists():
            return
        say(f"docker: bringing {', '.join(self.image_name(t) for t in names)} up to date "
            "with this checkout (docker/build.sh: about a minute the first time, seconds "
            "after)")
        began = time.perf_counter()
        self._build(names)
        say(f"docker: images ready in {time.perf_counter() - began:.1f} s")

    def _build(self, targets: list[str]) -> None:
        script = SOURCE_ROOT / "docker" / "build.sh"
        done = subprocess.run([str(script), *targets], capture_output=True, text=True,
                              env={**os.environ, "DEPLOYBENCH_IMAGE_TAG": self.tag},
                              check=False, timeout=1800)
        if done.returncode != 0:
            names = ", ".join(self.image_name(t) for t in targets)
            raise TargetError(f"building {names} failed:\n"
                              f"{(done.stderr or done.stdout)[-1500:]}")
        _BUILT.update(self.image_name(t) for t in targets)  # once per run

    def server(self, deployment: str, module: str, arguments: Sequence[str], *, bundle: str,
               cpus: list[int], log_path: Path | None, memory_mb: int | None
               ) -> ContainerProcess:
        """The deployment's image (deploybench-flask, whatever the result is named) running
        its entry point, the user's bundle folders mounted where the container sees them,
        and the log's folder mounted for the server to write its log in."""
        view, read_only = container_view(bundle)
        command = python_module_command(module, "--bundle", view, *arguments)
        mounts = [log_path.parent] if log_path is not None else []
        return ContainerProcess(self, deployment, command, cpus, log_path, mounts, memory_mb,
                                read_only=read_only)

    def image(self, engine: Any, target: str) -> Any:
        """The target's image, brought up to date with this checkout by docker/build.sh
        (seconds when nothing changed: it reuses the wheelhouse and Docker's cache), so a
        container never runs older code than the run; without the script (an installed
        deploybench), the image as it is."""
        docker = _sdk()
        name = self.image_name(target)
        script = SOURCE_ROOT / "docker" / "build.sh"
        if name in _BUILT or not script.exists():
            try:
                return engine.images.get(name)
            except docker.errors.ImageNotFound:
                raise TargetError(f"no image {name}, and no docker/build.sh to build it (a "
                                  "deploybench source checkout has one)") from None
        self._build([target])  # once per run: a cold start's new container reuses it
        return engine.images.get(name)


def _nspid(proc: psutil.Process) -> int | None:
    """A host process's PID inside its own PID namespace (the container's)."""
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


class ContainerProcess:
    """A server run in a container, with ServerProcess's interface."""

    def __init__(self, runtime: DockerRuntime, target: str, command: Sequence[str],
                 cpus: list[int], log_path: Path | None, mounts: Sequence[Path] = (),
                 default_memory_mb: int | None = None,
                 read_only: Mapping[Path, str] | None = None) -> None:
        self.runtime = runtime
        self.target = target
        # The image's entry point is `deploybench serve TARGET`; later options win.
        self.arguments = list(command[3:]) if command[1:2] == ["-m"] else list(command)
        self.cpus = cpus
        self.log_path = log_path
        self.mounts = list(mounts)
        #: Host folders mounted read-only where the container sees them: a user bundle's.
        self.read_only = dict(read_only or {})
        self.default_memory_mb = default_memory_mb
        self.engine: Any = None
        self.container: Any = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self.instance = ""
        self.proc: Any = None  # truthy while a container runs (ServedTarget checks it)
        self.launched_at: float | None = None
        self.image_facts: dict[str, Any] = {}
        self.applied: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}

    @property
    def memory_mb(self) -> int:
        return (self.runtime.memory_mb or self.default_memory_mb
                or DEFAULT_MEMORY_MB_PER_CPU * max(1, len(self.cpus)))

    def launch(self) -> None:
        self.engine = client()
        remove_orphans(self.engine)
        try:
            image = self.runtime.image(self.engine, self.target)
        except TargetError:
            raise
        except Exception as exc:  # the SDK's own errors
            raise TargetStartError(f"docker could not provide the image for {self.target}: "
                                   f"{exc}") from exc
        self.image_facts = {"image": self.runtime.image_name(self.target),
                            "image_id": image.short_id,
                            "image_size_mb": round(image.attrs.get("Size", 0) / 2**20, 1),
                            "image_created": image.attrs.get("Created")}
        arguments = list(self.arguments)
        ports = None
        if self.runtime.network == "bridge":
            port = arguments[arguments.index("--port") + 1]
            arguments[arguments.index("--host") + 1] = "0.0.0.0"  # inside the container
            ports = {f"{port}/tcp": ("127.0.0.1", int(port))}
            if "--metrics-port" in arguments:  # gRPC's metrics, on a side port
                side = arguments[arguments.index("--metrics-port") + 1]
                ports[f"{side}/tcp"] = ("127.0.0.1", int(side))
        cache = cache_dir().resolve()
        volumes = {str(cache): {"bind": str(cache), "mode": "ro"}}
        for host, inside in self.read_only.items():  # Docker wants absolute paths
            volumes[str(host.resolve())] = {"bind": inside, "mode": "ro"}
        for mount in (m.resolve() for m in self.mounts):
            volumes[str(mount)] = {"bind": str(mount), "mode": "rw"}
        # The reaper first, watching for a container with this run's own label: one
        # killed between create and its start is removed as well.
        self.instance = uuid.uuid4().hex
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "targets.runtimes.reaper", str(os.getpid()),
             f"{psutil.Process().create_time():.6f}", self.instance],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # not PDEATHSIG: it must outlive a killed run
        self.launched_at = time.perf_counter()
        try:
            self.container = self._run(image, arguments, ports, cache, volumes)
        except Exception as exc:  # the SDK's APIError and friends: say what failed
            self._stop_reaper()
            raise TargetStartError(f"docker could not start {self.image_facts['image']}: "
                                   f"{exc}") from exc
        self.proc = self.container
        self._check_same_machine()  # reloads the container's attributes
        self._record_applied_limits()

    def _run(self, image: Any, arguments: list[str], ports: Any, cache: Path,
             volumes: dict[str, Any]) -> Any:
        # By image ID: a tag retagged by another build meanwhile cannot swap the code.
        return self.engine.containers.run(
            image.id, arguments, detach=True,
            network_mode="host" if self.runtime.network == "host" else "bridge",
            ports=ports, cpuset_cpus=",".join(str(c) for c in self.cpus) or None,
            mem_limit=f"{self.memory_mb}m", memswap_limit=f"{self.memory_mb}m",
            environment={CACHE_ENV: str(cache)}, volumes=volumes,
            user=f"{os.getuid()}:{os.getgid()}",
            labels={OWNER_LABEL: owner_label(), "org.deploybench.target": self.target,
                    "org.deploybench.image": self.image_facts["image"],
                    INSTANCE_LABEL: self.instance},
        )

    def _check_same_machine(self) -> None:
        """The container's processes must be this machine's (their CPU and memory are
        read by host PID): a remote engine (DOCKER_HOST) or another PID namespace would
        have us read some unrelated process."""
        pid = self.pid
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            cgroup = ""
        if self.container.id not in cgroup:
            self.stop()
            raise TargetStartError(
                "the Docker engine's containers are not processes of this machine (a remote "
                "DOCKER_HOST, or another PID namespace): deploybench reads a container's CPU "
                "and memory by host PID. Use a local engine, or --endpoint to measure the "
                "deployment from outside")

    def _record_applied_limits(self) -> None:
        """The limits as Docker applied them (``docker inspect``), not as asked: what
        run.json reports is what the container ran under."""
        host = self.container.attrs.get("HostConfig", {})
        memory = host.get("Memory") or 0
        self.applied = {"cpuset": parse_cpus(host["CpusetCpus"]) if host.get("CpusetCpus")
                        else [],
                        "memory_limit_mb": round(memory / 2**20) if memory else None,
                        "network": host.get("NetworkMode")}

    @property
    def pid(self) -> int:
        """The container's main process, as the host sees it."""
        assert self.container is not None, "not started"
        self.container.reload()
        return int(self.container.attrs["State"]["Pid"])

    def running(self) -> bool:
        if self.container is None:
            return False
        with contextlib.suppress(Exception):
            self.container.reload()
            return bool(self.container.status == "running")
        return False

    def exit_note(self) -> str | None:
        """How the container ended (its exit code, whether the kernel OOM-killed it), or
        None if it runs."""
        if self.container is None or self.running():
            return None
        state = self.container.attrs.get("State", {})
        note = f"container {self.container.short_id} exited with code {state.get('ExitCode')}"
        return note + (" (OOM-killed: over its memory limit)" if state.get("OOMKilled")
                       else "")

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float, what: str) -> float:
        assert self.launched_at is not None
        deadline = self.launched_at + timeout_s
        while True:
            if not self.running():
                raise TargetStartError(f"{what} container exited before it was healthy:\n"
                                       f"{self.logs()[-2000:]}")
            if ready():
                return time.perf_counter() - self.launched_at
            if time.perf_counter() > deadline:
                raise TargetStartError(f"{what} container was not healthy after "
                                       f"{timeout_s:.0f} s:\n{self.logs()[-2000:]}")
            time.sleep(POLL_S)

    def tree(self) -> list[psutil.Process]:
        if not self.running():
            return []
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def owns(self, pid: int) -> bool:
        """The server answered from one of this container's processes (``pid`` is as the
        container sees it)."""
        return pid in {_nspid(p) for p in self.tree()}

    def logs(self) -> str:
        with contextlib.suppress(Exception):
            return str(self.container.logs().decode(errors="replace"))
        return ""

    def read_stats(self) -> dict[str, Any]:
        """Memory as `docker stats` shows it (the cgroup's usage less inactive page cache:
        the bundle files read, logs written), in MB; the cgroup's peak where the kernel
        keeps one (cgroup v1; v2 has none: None)."""
        with contextlib.suppress(Exception):
            memory = self.container.stats(stream=False).get("memory_stats", {})
            usage, peak = memory.get("usage"), memory.get("max_usage")
            stats = memory.get("stats", {})
            cache = stats.get("total_inactive_file", stats.get("inactive_file", 0))
            self.stats = {
                "container_memory_mb": round((usage - cache) / 2**20, 1) if usage else None,
                "container_memory_peak_mb": round(peak / 2**20, 1) if peak else None}
        return self.stats

    def stop(self) -> None:
        if self.container is None:
            return
        self.read_stats()
        if self.log_path is not None:
            with contextlib.suppress(OSError), self.log_path.open("a") as log:
                log.write(self.logs())
        container, self.container, self.proc = self.container, None, None
        with contextlib.suppress(Exception):
            container.stop(timeout=5)
        try:
            container.remove(force=True)
        except Exception as exc:
            # Left running, it could answer the next container's health checks: stop here.
            raise TargetError(f"could not remove container {container.short_id} ({exc}); "
                              f"remove it by hand: docker rm -f {container.id}") from exc
        finally:
            self._stop_reaper()

    def _stop_reaper(self) -> None:
        reaper, self._reaper = self._reaper, None
        if reaper is not None and reaper.poll() is None:  # by PID
            reaper.terminate()
            try:
                reaper.wait(5)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait()

    def describe(self) -> dict[str, Any]:
        asked = {"network": self.runtime.network, "memory_limit_mb": self.memory_mb,
                 "cpuset": self.cpus}
        return {"runtime": f"docker ({self.runtime.network} network)", **asked,
                **self.applied, "limits_from": "docker inspect" if self.applied
                else "as asked (the container did not start)",
                **self.image_facts, **self.stats}


def docker_available() -> bool:
    """True when a Docker engine answers (for tests and the CLI's early check)."""
    if shutil.which("docker") is None and not Path("/var/run/docker.sock").exists():
        return False
    try:
        client()
    except DockerUnavailable:
        return False
    return True
