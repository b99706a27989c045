"""CPU time and memory of the target and of the load generator, read inside the driver.

Served targets are process trees (gunicorn's master and workers): their CPU is the sum
over the tree. The in-process target is the driver's own process, where the application's
handler threads call the model: its CPU is the process's, less the driver's own threads'
(the one that measures windows, and any sampler it starts), read from their CPU clocks.

Reads run in the load generator's event loop, so they stall every user while they run.
The CPU read at the edges of a measurement window is kept to one ``/proc/PID/stat`` per
process of a tree resolved before the stage (a few tens of microseconds each); memory,
which needs ``smaps_rollup`` (milliseconds), is read only once the window's requests
have all been answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class CpuReading:
    #: CPU seconds of each target process (or thread) read, by PID (TID).
    target: dict[int, float]
    loadgen_s: float
    #: With --loadgen-workers: each worker's (CPU seconds, when it read them), as last
    #: pushed; ``loadgen_s`` sums them with the master's own.
    workers: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: CPU seconds of workers on other machines (in ``workers``, not in ``loadgen_s``,
    #: which is this machine's): they count toward the CPU per request, not this
    #: machine's load-generator CPUs.
    remote_s: float = 0.0

    def loadgen_percent(self, before: CpuReading, wall_s: float, cores: int = 1) -> float:
        """The load generator's CPU over ``wall_s`` as a percentage of ONE core (a Locust
        process is one event loop). With workers, the worse of the busiest worker (over
        its own readings' interval) and all of them with the master over the ``cores``
        they share: either at 100% means the load generator was the limit."""
        if wall_s <= 0:
            return 0.0
        total = 100.0 * (self.loadgen_s - before.loadgen_s) / wall_s
        if not self.workers:
            return total
        busiest = 0.0
        for key, (cpu, at) in self.workers.items():
            cpu0, at0 = before.workers.get(key, (cpu, at))
            if at > at0:
                busiest = max(busiest, 100.0 * (cpu - cpu0) / (at - at0))
        return max(busiest, total / max(1, cores))

    def target_since(self, before: CpuReading) -> float:
        """Target CPU seconds between two readings, over the processes alive at both
        (one that died or appeared in between is missing: the stage is flagged)."""
        return sum(max(0.0, s - before.target[pid]) for pid, s in self.target.items()
                   if pid in before.target)


@dataclass(frozen=True)
class MemoryReading:
    #: Resident memory summed over the target's processes (shared pages counted in each).
    rss_mb: float | None
    #: Proportional set size: shared pages split between the processes sharing them.
    pss_mb: float | None
    #: Each process's peak resident memory since it started (VmHWM), summed.
    peak_rss_mb: float | None
    loadgen_rss_mb: float


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


class ResourceMeter:
    def __init__(self, watch_pids: list[int],
                 harness_cpu: Callable[[], float] | None = None) -> None:
        self.watch_pids = watch_pids
        #: In-process: the CPU seconds of the driver's own threads; the rest of this
        #: process is the application's (the target's).
        self.harness_cpu = harness_cpu
        self.me = psutil.Process()
        self._tree: list[psutil.Process] = []

    def attach(self) -> None:
        """Resolve the target's process tree; call before each stage, outside the window."""
        tree: list[psutil.Process] = []
        for pid in self.watch_pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                tree += [root, *root.children(recursive=True)]
        self._tree = tree

    @property
    def measures_target(self) -> bool:
        """False for a target on another machine: nothing here to read its CPU from."""
        return self.harness_cpu is not None or bool(self.watch_pids)

    def dead(self) -> list[int]:
        """The watched processes (each a served target's main process) that are gone or
        zombies: the target died. Its workers may come and go (a supervisor restarts
        them); those are :meth:`tree_changed`'s."""
        gone = []
        for pid in self.watch_pids:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    gone.append(pid)
            except psutil.NoSuchProcess:
                gone.append(pid)
        return gone

    def tree_changed(self) -> bool:
        """True when a target process died or a new one appeared since :meth:`attach`:
        the CPU figures of the stage then miss or double-count that process's time."""
        if self.harness_cpu is not None:
            return False
        before = {p.pid for p in self._tree}
        now: set[int] = set()
        for pid in self.watch_pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                now |= {root.pid, *(c.pid for c in root.children(recursive=True))}
        return now != before

    def cpu(self) -> CpuReading:
        mine = self.me.cpu_times()
        own = mine.user + mine.system
        if self.harness_cpu is not None:
            harness = self.harness_cpu()
            return CpuReading({0: max(0.0, own - harness)}, harness)
        target: dict[int, float] = {}
        for proc in self._tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                target[proc.pid] = times.user + times.system
        return CpuReading(target, own)

    def rss_mb(self) -> float | None:
        """Resident memory summed over the target's processes *now*: the cheap read
        (``/proc/PID/statm``, microseconds each) a timeline's series takes every few
        seconds while users run. The tree is resolved afresh (about a millisecond), so
        environments or workers started since :meth:`attach` count, without changing the
        tree the CPU figures use. None for a target on another machine."""
        if self.harness_cpu is not None:
            return float(self.me.memory_info().rss / MB)
        rss = 0.0
        found = False
        for pid in self.watch_pids:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                root = psutil.Process(pid)
                for proc in (root, *root.children(recursive=True)):
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        rss += proc.memory_info().rss / MB
                        found = True
        return rss if found else None

    def memory(self) -> MemoryReading:
        own_rss = self.me.memory_info().rss / MB
        if self.harness_cpu is not None:
            # The model lives in this process: its memory cannot be told apart from the
            # load generator's, so the process's figures are reported for both.
            info = self.me.memory_full_info()
            return MemoryReading(own_rss, info.pss / MB, _peak_rss_mb(self.me.pid), own_rss)
        rss = pss = peak = 0.0
        for proc in self._tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                info = proc.memory_full_info()
                rss += info.rss / MB
                pss += info.pss / MB
                peak += _peak_rss_mb(proc.pid)
        if not self._tree:
            return MemoryReading(None, None, None, own_rss)
        return MemoryReading(rss, pss, peak, own_rss)
