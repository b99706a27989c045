from __future__ import annotations

import argparse
import os

import pytest

from harness.cpus import CpuPlan, default_split, plan_cpus
from harness.errors import UserError
from targets.runtimes.cpuset import format_cpus, parse_cpus


@pytest.mark.parametrize(("text", "cpus"), [("0", [0]), ("0-3", [0, 1, 2, 3]),
                                            ("3,1-2", [1, 2, 3]), (" 1 , 4 ", [1, 4])])
def test_parse_cpus(text: str, cpus: list[int]) -> None:
    assert parse_cpus(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "1,,2x"])
def test_parse_cpus_rejects_garbage(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="CPU"):
        parse_cpus(text)


def test_format_cpus_compresses_ranges() -> None:
    assert format_cpus([5, 0, 1, 2]) == "0-2,5"
    assert format_cpus([7]) == "7"


def test_default_split_keeps_sides_apart() -> None:
    assert default_split([0, 1]) == CpuPlan(target=(1,), loadgen=(0,))
    plan = default_split(list(range(8)))
    assert plan.loadgen == (0, 1, 2, 3)
    assert plan.target == (4, 5, 6, 7)
    assert plan.overlap == ()


def test_one_cpu_is_refused_with_the_fix() -> None:
    with pytest.raises(UserError, match="--target-cpus"):
        default_split([0])


def test_unavailable_cpu_is_refused() -> None:
    with pytest.raises(UserError, match="may not use"):
        plan_cpus([999], [0])


def test_given_side_leaves_the_rest_to_the_other() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs 2 CPUs")
    plan = plan_cpus([allowed[-1]], None)
    assert plan.target == (allowed[-1],)
    assert plan.loadgen == tuple(allowed[:-1])
    # What the machine allowed, kept for run.json (the orchestrator pins itself later).
    assert plan.allowed == tuple(allowed)


def smt(n_cores: int):  # type: ignore[no-untyped-def]
    """Linux's usual SMT numbering: core k has threads k and k + n_cores."""
    def siblings(cpu: int) -> tuple[int, ...]:
        core = cpu % n_cores
        return (core, core + n_cores)
    return siblings


def test_split_with_hyperthreads_keeps_each_core_on_one_side() -> None:
    plan = default_split(list(range(8)), smt(4))  # 4 cores, 2 threads each
    assert plan.loadgen == (0, 1, 4, 5)
    assert plan.target == (2, 3, 6, 7)
    assert plan.shared_cores == ()


def test_single_core_with_two_threads_is_split_but_flagged() -> None:
    plan = default_split([0, 1], smt(1))
    assert plan.overlap == ()
    assert plan.shared_cores == ((0, 1),)


def test_explicit_sets_sharing_a_core_are_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    plan = plan_cpus([0, 1], [4, 5], smt(4))  # threads of cores 0 and 1 on both sides
    assert plan.shared_cores == ((0, 4), (1, 5))
    assert plan_cpus([0, 1], [2, 3], smt(4)).shared_cores == ()


def test_one_side_given_leaves_whole_cores_to_the_other(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    plan = plan_cpus([2, 3], None, smt(4))  # cores 2 and 3 = CPUs 2, 3, 6, 7
    assert plan.loadgen == (0, 1, 4, 5)
    assert plan.shared_cores == ()
