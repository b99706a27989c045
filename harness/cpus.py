"""CPU placement: which cores the target gets and which the load generator gets.

The load generator must never share cores with the target (design rule): on a shared
core the client steals the server's CPU and every number is wrong in an unknown way. With
simultaneous multithreading (SMT, hyperthreads) two CPU numbers can be one physical core,
and Linux usually numbers a core's threads k and k + N/2, so the split is made by physical
core (sysfs topology), never by CPU number alone.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from targets.runtimes.cpuset import format_cpus, parse_cpus

SiblingReader = Callable[[int], tuple[int, ...]]


def sysfs_siblings(cpu: int) -> tuple[int, ...]:
    """The hardware threads of ``cpu``'s physical core (itself alone when unknown)."""
    path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
    try:
        return tuple(parse_cpus(path.read_text().strip()))
    except (OSError, ValueError):
        return (cpu,)


def core_groups(cpus: Iterable[int], siblings: SiblingReader = sysfs_siblings
                ) -> list[tuple[int, ...]]:
    """``cpus`` grouped by physical core, cores in order of their first CPU."""
    wanted = set(cpus)
    groups = {tuple(c for c in siblings(cpu) if c in wanted) or (cpu,) for cpu in wanted}
    return sorted(groups)


@dataclass(frozen=True)
class CpuPlan:
    target: tuple[int, ...]
    loadgen: tuple[int, ...]
    #: Physical cores with hardware threads on both sides (SMT siblings split).
    shared_cores: tuple[tuple[int, ...], ...] = ()
    #: The CPUs this process was allowed when the plan was made, before it pinned itself
    #: to the load generator's (what the machine gave the run; empty when not known).
    allowed: tuple[int, ...] = ()

    @property
    def overlap(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.target) & set(self.loadgen)))

    def describe(self) -> str:
        return (f"target CPUs {format_cpus(self.target)}, "
                f"load generator CPUs {format_cpus(self.loadgen)}")


def _shared(target: Iterable[int], loadgen: Iterable[int], siblings: SiblingReader
            ) -> tuple[tuple[int, ...], ...]:
    t, g = set(target), set(loadgen)
    return tuple(core for core in core_groups(t | g, siblings)
                 if set(core) & t and set(core) & g and not set(core) <= (t & g))


def default_split(available: list[int], siblings: SiblingReader = sysfs_siblings) -> CpuPlan:
    """The lower half of the physical cores for the load generator, the rest for the target.

    On 2 cores: load generator on one, target on the other. One load-generator core
    drives ~10k requests/s of this project's HTTP requests (``deploybench calibrate``
    measures it; each stage records its CPU per request), more than one core of a Python
    server serves, so an even split
    keeps the load generator out of the way on machines of any size.
    """
    cores = core_groups(available, siblings)
    if len(cores) < 2:
        cpus = sorted(available)
        if len(cpus) < 2:
            raise UserError(
                f"need at least 2 CPUs to keep the load generator off the target's (have "
                f"{format_cpus(cpus)}). Pass --target-cpus and --loadgen-cpus to share one, "
                f"knowing the numbers will mix both"
            )
        # One physical core with several threads: the best left is a thread each.
        half = len(cpus) // 2
        return CpuPlan(target=tuple(cpus[half:]), loadgen=tuple(cpus[:half]),
                       shared_cores=(tuple(cpus),))
    half = len(cores) // 2
    loadgen = tuple(c for core in cores[:half] for c in core)
    target = tuple(c for core in cores[half:] for c in core)
    return CpuPlan(target=tuple(sorted(target)), loadgen=tuple(sorted(loadgen)))


def plan_cpus(target: list[int] | None, loadgen: list[int] | None,
              siblings: SiblingReader = sysfs_siblings) -> CpuPlan:
    available = sorted(os.sched_getaffinity(0))
    return dataclasses.replace(_plan(target, loadgen, available, siblings),
                               allowed=tuple(available))


def _plan(target: list[int] | None, loadgen: list[int] | None, available: list[int],
          siblings: SiblingReader) -> CpuPlan:
    if target is None and loadgen is None:
        return default_split(available, siblings)
    if target is None or loadgen is None:
        given = target if target is not None else loadgen
        assert given is not None
        # Whole cores the given side does not touch; only if there are none, the given
        # CPUs' hyperthread siblings (flagged below as shared cores).
        touched = {c for core in core_groups(available, siblings) if set(core) & set(given)
                   for c in core}
        rest = ([c for c in available if c not in touched]
                or [c for c in available if c not in given])
        if not rest:
            raise UserError(
                f"no CPUs left for the other side after {format_cpus(given)} "
                f"(allowed: {format_cpus(available)}). Pass both --target-cpus and --loadgen-cpus"
            )
        target = target if target is not None else rest
        loadgen = loadgen if loadgen is not None else rest
    for name, cpus in (("--target-cpus", target), ("--loadgen-cpus", loadgen)):
        missing = [c for c in cpus if c not in available]
        if missing:
            raise UserError(
                f"{name} names CPUs this process may not use ({format_cpus(missing)}). "
                f"Allowed: {format_cpus(available)}"
            )
    return CpuPlan(target=tuple(sorted(target)), loadgen=tuple(sorted(loadgen)),
                   shared_cores=_shared(target, loadgen, siblings))
