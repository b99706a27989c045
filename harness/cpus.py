"""CPU placement: which cores the target gets and which the load generator gets.

The load generator must never share cores with the target (design rule): on a shared
core the client steals the server's CPU and every number is wrong in an unknown way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.errors import UserError
from targets.cpuset import format_cpus


@dataclass(frozen=True)
class CpuPlan:
    target: tuple[int, ...]
    loadgen: tuple[int, ...]

    @property
    def overlap(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.target) & set(self.loadgen)))

    def describe(self) -> str:
        return (f"target CPUs {format_cpus(self.target)}, "
                f"load generator CPUs {format_cpus(self.loadgen)}")


def default_split(available: list[int]) -> CpuPlan:
    """Half the allowed CPUs for the load generator (the lower half), the rest for the target.

    On 2 cores: load generator on one, target on the other. Locust's FastHttpUser drives
    ~10-15k requests/s per core, more than a Python server core serves, so an even split
    keeps the load generator out of the way on machines of any size.
    """
    cpus = sorted(available)
    if len(cpus) < 2:
        raise UserError(
            f"need at least 2 CPUs to keep the load generator off the target's (have "
            f"{format_cpus(cpus)}). Pass --target-cpus and --loadgen-cpus to share one, "
            f"knowing the numbers will mix both"
        )
    half = len(cpus) // 2
    return CpuPlan(target=tuple(cpus[half:]), loadgen=tuple(cpus[:half]))


def plan_cpus(target: list[int] | None, loadgen: list[int] | None) -> CpuPlan:
    available = sorted(os.sched_getaffinity(0))
    if target is None and loadgen is None:
        return default_split(available)
    if target is None or loadgen is None:
        given = target if target is not None else loadgen
        assert given is not None
        rest = [c for c in available if c not in given]
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
    return CpuPlan(target=tuple(sorted(target)), loadgen=tuple(sorted(loadgen)))
