"""Each execution environment in a cgroup of its own, shaped as AWS shapes it.

* **CPU**: a CPU quota of ``shape.cpu_share(memory_mb)`` CPUs, capped by the target CPUs
  (v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, v2 ``cpu.max``). The environment stays
  pinned to the target CPUs (affinity is inherited): the quota says how much of them it
  may use.
* **Memory**: a limit of the memory size, swap included (v1 ``memory.limit_in_bytes`` and
  ``memory.memsw.limit_in_bytes``, v2 ``memory.max`` and ``memory.swap.max 0``); past it the
  kernel's OOM killer ends the environment, which Lambda reports as ``Runtime.ExitError``
  "signal: killed". Max Memory Used is the cgroup's peak (v1 ``memory.max_usage_in_bytes``,
  v2 ``memory.peak``), which counts page cache too.
* **Freeze**: an idle environment is frozen (v1 ``freezer.state``, v2 ``cgroup.freeze``;
  without a freezer, SIGSTOP/SIGCONT of its process group) and thawed for its next event.
* **Weight**: the function's cgroup weighs as many processes as it has environments.

The cgroups nest under the emulator's own, per controller:
``<own>/deploybench-<emulator pid>/env-<id>``. An environment joins its cgroups before it
runs any Python (:func:`launch_command`: a shell writes its own PID to each
``cgroup.procs`` and then execs the runtime), so its whole Init is throttled and charged.
Where the machine allows none of it (no cgroup mounted, read-only as in the docker
runtime's container, ``--sandbox off``), :meth:`Shaper.describe` says so and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from targets.awslambda.shape import Mechanism, Sandbox, cpu_share, visible_vcpus

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
PREFIX = "deploybench-"
#: The CFS period the quota is a share of: the kernel's default (100 ms).
CFS_PERIOD_US = 100_000
#: The kernel's smallest CFS quota.
MIN_QUOTA_US = 1000
#: How long a thaw may take before we stop waiting for the freezer to say THAWED.
THAW_WAIT_S = 1.0
#: Idle time before a freeze (``--freeze-after-ms``). AWS freezes at once, off the
#: function's CPU; here a freeze and thaw cost ~0.3 ms of the target CPU (v1, measured),
#: which back-to-back invocations would pay. A background thread gets at most this.
FREEZE_AFTER_S = 0.010
SandboxMode = Literal["auto", "off"]
#: How long stale environments, once thawed, get to exit (on the SIGTERM they had
#: pending) and leave their cgroups, before those are left for the next emulator.
STALE_EXIT_S = 1.0

#: Exit signals as Lambda's runtime interface (Go) names them in "Runtime exited with
#: error: signal: killed".
GO_SIGNAL_NAMES = {
    signal.SIGKILL: "killed", signal.SIGTERM: "terminated", signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted", signal.SIGBUS: "bus error", signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup", signal.SIGQUIT: "quit", signal.SIGILL: "illegal instruction",
    signal.SIGFPE: "floating point exception", signal.SIGPIPE: "broken pipe",
}


def exit_description(code: int) -> str:
    """A process's exit as Lambda words it: ``signal: killed``, ``exit status 1``."""
    if code < 0:
        sig = signal.Signals(-code)
        return f"signal: {GO_SIGNAL_NAMES.get(sig, sig.name)}"
    return f"exit status {code}"


def own_cgroups(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` parsed: each v1 controller (and ``""`` for the v2 unified
    hierarchy) to this process's cgroup path in it."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


@dataclass(frozen=True)
class Layout:
    """Where this process's cgroups are: v1, a directory per controller (``cpu``,
    ``memory``, optionally ``freezer``); v2, one directory (key ``unified``)."""

    version: int
    dirs: dict[str, Path]


def _writable(path: Path) -> bool:
    return path.is_dir() and (path / "cgroup.procs").exists() and os.access(path, os.W_OK)


def detect(root: Path = CGROUP_ROOT, proc_text: str | None = None) -> Layout | str:
    """This process's cgroups if they can hold the environments' ones, else why not."""
    if proc_text is None:
        try:
            proc_text = PROC_SELF_CGROUP.read_text()
        except OSError as exc:
            return f"cannot read {PROC_SELF_CGROUP} ({exc.strerror})"
    own = own_cgroups(proc_text)
    controllers = root / "cgroup.controllers"
    if controllers.exists():
        available = controllers.read_text().split()
        if not {"cpu", "memory"} <= set(available):
            return f"cgroup v2 at {root} lacks the cpu or memory controller ({available})"
        here = root / own.get("", "/").lstrip("/")
        if not _writable(here):
            return f"cgroup v2: {here} is not writable (a read-only /sys/fs/cgroup?)"
        return Layout(2, {"unified": here})
    dirs: dict[str, Path] = {}
    for controller in ("cpu", "memory", "freezer"):
        if controller not in own or not (root / controller).is_dir():
            if controller == "freezer":
                continue  # the freeze falls back to SIGSTOP
            return f"no cgroup v1 {controller} controller mounted at {root / controller}"
        here = root / controller / own[controller].lstrip("/")
        if not _writable(here):
            if controller == "freezer":
                continue
            return f"cgroup v1: {here} is not writable (a read-only /sys/fs/cgroup?)"
        dirs[controller] = here
    return Layout(1, dirs)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parents: list[Path]) -> list[Path]:
    """Remove ``deploybench-<pid>`` cgroups (and their ``env-*`` children) left by
    emulators that are gone; only empty ones can go (rmdir refuses the others). Frozen
    ones are thawed first, so that environments left behind can die.
    Returns the directories removed."""
    stale: list[Path] = []
    for parent in parents:
        with contextlib.suppress(OSError):
            for entry in parent.iterdir():
                match = re.fullmatch(re.escape(PREFIX) + r"(\d+)", entry.name)
                if match and entry.is_dir() and not _pid_alive(int(match.group(1))):
                    stale.append(entry)
    envs = [child for entry in stale for child in _children(entry)]
    # Thawed everywhere before anything is removed: a thawed environment takes a moment
    # to die and leave its cgroups (in every controller).
    wait_s = STALE_EXIT_S if any([_thaw_stale(env) for env in envs]) else 0.0
    deadline = time.monotonic() + wait_s
    removed: list[Path] = []
    for path in [*envs, *stale]:
        while True:
            try:
                path.rmdir()
                removed.append(path)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
    return removed


def _children(entry: Path) -> list[Path]:
    with contextlib.suppress(OSError):
        return [c for c in entry.iterdir() if c.is_dir() and c.name.startswith("env-")]
    return []


def _thaw_stale(env_dir: Path) -> bool:
    """Thaw an environment whose emulator died while it was frozen: the SIGTERM its
    parent's death sent it (die_with_parent) lands only once it runs again. True if it
    had a freezer and a process in it."""
    thawed = False
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        if (env_dir / name).exists():
            with contextlib.suppress(OSError):
                (env_dir / name).write_text(value)
                thawed = bool((env_dir / "cgroup.procs").read_text().strip())
    return thawed


def launch_command(join: list[Path], argv: list[str]) -> list[str]:
    """``argv`` started by a shell that first moves itself into each cgroup in ``join``
    (their ``cgroup.procs``), then execs it (same PID): nothing of the runtime runs
    outside its cgroups. A failed join exits 111 with the reason on stderr."""
    if not join:
        return argv
    script = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || '
              '{ echo "deploybench: cannot join cgroup $1" >&2; exit 111; }; '
              'shift; n=$((n - 1)); done; exec "$@"')
    return ["/bin/sh", "-c", script, "sh", str(len(join)), *map(str, join), *argv]


class Enclosure:
    """One environment's cgroups (none where the machine has none): join, freeze, thaw,
    peak memory, and removal once its process is gone."""

    def __init__(self, layout: Layout | None, dirs: dict[str, Path], freeze: Mechanism) -> None:
        self.layout = layout
        #: Controller (v2: ``unified``) to this environment's cgroup in it.
        self.dirs = dirs
        self.freeze_by = freeze
        self.frozen = False
        self._pending: asyncio.TimerHandle | None = None

    @property
    def join(self) -> list[Path]:
        """The ``cgroup.procs`` files the environment's process writes its PID to."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def _dir(self, controller: str) -> Path | None:
        if self.layout is not None and self.layout.version == 2:
            return self.dirs.get("unified")
        return self.dirs.get(controller)

    def freeze_after(self, pid: int | None, delay_s: float, idle: Callable[[], bool]) -> None:
        """Freeze after ``delay_s`` (0: now) if ``idle()`` still says so then; a thaw
        before that cancels it."""
        self._cancel()
        if delay_s <= 0:
            self.freeze(pid)
            return

        def due() -> None:
            self._pending = None
            if idle():
                self.freeze(pid)

        self._pending = asyncio.get_running_loop().call_later(delay_s, due)

    def _cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def freeze(self, pid: int | None) -> None:
        if self.freeze_by == "none" or pid is None or self.frozen:
            return
        self.frozen = True
        if self.freeze_by == "sigstop":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGSTOP)
        elif self.freeze_by == "cgroup-v2":
            self._write("unified", "cgroup.freeze", "1")
        else:
            self._write("freezer", "freezer.state", "FROZEN")

    def thaw(self, pid: int | None) -> float | None:
        """Thaw a frozen environment; the milliseconds until the kernel says it runs
        (None: it was not frozen)."""
        self._cancel()
        if not self.frozen:
            return None
        started = time.perf_counter()
        self.frozen = False
        if self.freeze_by == "sigstop":
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGCONT)
        elif self.freeze_by == "cgroup-v2":
            self._write("unified", "cgroup.freeze", "0")
            self._wait_for("unified", "cgroup.events", lambda t: "frozen 0" in t)
        else:
            self._write("freezer", "freezer.state", "THAWED")
            self._wait_for("freezer", "freezer.state", lambda t: t.strip() == "THAWED")
        return (time.perf_counter() - started) * 1000.0

    def _write(self, controller: str, name: str, value: str) -> None:
        d = self._dir(controller)
        if d is not None:
            with contextlib.suppress(OSError):
                (d / name).write_text(value)

    def _wait_for(self, controller: str, name: str, done: Callable[[str], bool]) -> None:
        d = self._dir(controller)
        if d is None:
            return
        deadline = time.perf_counter() + THAW_WAIT_S
        while time.perf_counter() < deadline:
            try:
                if done((d / name).read_text()):
                    return
            except OSError:
                return
            time.sleep(0.0002)

    def peak_mb(self) -> float | None:
        """The cgroup's peak memory (page cache included), None without one."""
        d = self._dir("memory")
        if d is None or self.layout is None:
            return None
        name = "memory.peak" if self.layout.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((d / name).read_text().split()[0]) / 2**20
        except (OSError, ValueError, IndexError):
            return None

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this cgroup."""
        d = self._dir("memory")
        if d is None or self.layout is None:
            return False
        name = "memory.events" if self.layout.version == 2 else "memory.oom_control"
        try:
            for line in (d / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip() not in ("", "0"):
                    return True
        except OSError:
            pass
        return False

    def remove(self) -> bool:
        """Remove the cgroups, once the environment's processes are gone; True when none
        is left (one that still holds a process stays: retry, or the next emulator's
        stale cleanup removes it)."""
        for controller, d in list(self.dirs.items()):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            del self.dirs[controller]
        return not self.dirs


def _failed_reason(layout: Layout, exc: OSError) -> str:
    """Why the environments' cgroups could not be made, in words a user can act on."""
    own = next(iter(layout.dirs.values()))
    if layout.version == 2 and exc.errno == errno.EBUSY:
        return (f"cgroup v2: cannot enable the cpu and memory controllers below {own}: it "
                "holds processes (this emulator's among them), and v2 allows controllers "
                "only below a cgroup without processes, except at the root; cgroup v1, or "
                "deploybench started in the root cgroup, enforces them")
    return f"cannot create cgroups under {layout.dirs} ({exc})"


class Shaper:
    """What a function's environments get here: CPU share, memory limit and freeze,
    enforced as far as the machine allows (``mode="off"``: no cgroups at all)."""

    def __init__(self, memory_mb: int, target_cpus: int, mode: SandboxMode = "auto",
                 freeze: bool = True, root: Path = CGROUP_ROOT,
                 proc_text: str | None = None) -> None:
        self.memory_mb = memory_mb
        self.share = cpu_share(memory_mb)
        self.target_cpus = max(1, target_cpus)
        self.share_effective = min(self.share, float(self.target_cpus))
        self.layout: Layout | None = None
        self.reason: str | None = None
        #: Controller to this emulator's ``deploybench-<pid>`` cgroup in it.
        self.bases: dict[str, Path] = {}
        if mode == "off":
            self.reason = "--sandbox off"
        else:
            found = detect(root, proc_text)
            if isinstance(found, str):
                self.reason = found
            else:
                try:
                    self._make_bases(found)
                    self.layout = found
                except OSError as exc:
                    self._remove_bases()
                    self.reason = _failed_reason(found, exc)
        self.freeze_by: Mechanism = "none"
        if freeze:
            self.freeze_by = self._mechanism("freezer") if self.layout else "sigstop"
            if self.freeze_by == "none":
                self.freeze_by = "sigstop"

    def _mechanism(self, controller: str) -> Mechanism:
        if self.layout is None:
            return "none"
        if self.layout.version == 2:
            return "cgroup-v2"
        return "cgroup-v1" if controller in self.layout.dirs else "none"

    def _make_bases(self, layout: Layout) -> None:
        remove_stale(list(layout.dirs.values()))
        name = f"{PREFIX}{os.getpid()}"
        for controller, own in layout.dirs.items():
            base = own / name
            base.mkdir(exist_ok=True)
            self.bases[controller] = base
            if layout.version == 2:
                # Delegate the controllers: own's subtree, then ours. v2 refuses the first
                # where own holds processes (other than at the root): then nothing is
                # enforced, and the reason says so.
                for d in (own, base):
                    (d / "cgroup.subtree_control").write_text("+cpu +memory")

    def _remove_bases(self) -> None:
        for base in self.bases.values():
            with contextlib.suppress(OSError):
                base.rmdir()
        self.bases = {}

    def describe(self) -> Sandbox:
        cpu = self._mechanism("cpu")
        memory = self._mechanism("memory")
        return {"memory_mb": self.memory_mb, "cpu_share": round(self.share, 4),
                "cpu_share_effective": round(self.share_effective, 4),
                "cpu": cpu, "memory": memory, "freeze": self.freeze_by,
                "enforced": cpu != "none" and memory != "none", "reason": self.reason}

    @property
    def torch_threads(self) -> int:
        """Intra-op threads (OMP/MKL) each environment runs: as many as the vCPUs AWS
        shows that size (``nproc``: 2 from 1,770 MB), which PyTorch uses by default, capped
        by the target CPUs, where the CPU quota holds them to the share; one where it does
        not (unthrottled environments share the target CPUs, one thread each)."""
        if self._mechanism("cpu") == "none":
            return 1
        return max(1, min(visible_vcpus(self.memory_mb), self.target_cpus))

    @property
    def enforced_share(self) -> float | None:
        """The CPU share each environment is held to; None: unthrottled."""
        return round(self.share_effective, 4) if self._mechanism("cpu") != "none" else None

    def weigh(self, environments: int) -> None:
        """The function's cgroup weighs as many processes against the emulator: at one
        weight all environments together got what the emulator alone got (measured: a
        32-user stage's Init starved past its 100 s cap; 44 s weighed, 42 s without cgroups)."""
        v2 = self.layout is not None and self.layout.version == 2
        base = self.bases.get("unified" if v2 else "cpu")
        n = max(1, environments)
        with contextlib.suppress(OSError):
            if base is not None:
                (base / ("cpu.weight" if v2 else "cpu.shares")).write_text(
                    str(min(10000, 100 * n) if v2 else 1024 * n))

    def enclose(self, env_id: int) -> Enclosure:
        """Create environment ``env_id``'s cgroups with its limits."""
        if self.layout is None:
            return Enclosure(None, {}, self.freeze_by)
        dirs: dict[str, Path] = {}
        limit = self.memory_mb * 2**20
        quota = max(MIN_QUOTA_US, round(self.share_effective * CFS_PERIOD_US))
        try:
            for controller, base in self.bases.items():
                d = base / f"env-{env_id}"
                d.mkdir(exist_ok=True)
                dirs[controller] = d
            enclosure = Enclosure(self.layout, dirs, self.freeze_by)
            if self.layout.version == 2:
                d = dirs["unified"]
                (d / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
                (d / "memory.max").write_text(str(limit))
                if (d / "memory.swap.max").exists():
                    (d / "memory.swap.max").write_text("0")
                return enclosure
            cpu_dir, mem_dir = dirs["cpu"], dirs["memory"]
            (cpu_dir / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (cpu_dir / "cpu.cfs_quota_us").write_text(str(quota))
            # memsw (memory + swap) may never be below the memory limit: lowered, the
            # memory limit goes first; raised (a cgroup reused), memsw first.
            names = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            if not (mem_dir / names[1]).exists():
                names.pop()
            try:
                for name in names:
                    (mem_dir / name).write_text(str(limit))
            except OSError:
                for name in reversed(names):
                    (mem_dir / name).write_text(str(limit))
            return enclosure
        except OSError:
            Enclosure(self.layout, dirs, self.freeze_by).remove()
            raise

    def close(self) -> None:
        """Remove the emulator's cgroups (after every environment's are gone)."""
        for controller, base in self.bases.items():
            for child in list(base.iterdir()) if base.is_dir() else []:
                if child.is_dir() and child.name.startswith("env-"):
                    Enclosure(self.layout, {controller: child}, "none").remove()
        self._remove_bases()
