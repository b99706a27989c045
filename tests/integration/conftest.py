from __future__ import annotations

import os

import pytest

from harness.cpus import CpuPlan, default_split


@pytest.fixture(scope="session")
def cpus() -> CpuPlan:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        # One CPU: share it (integration tests check behaviour, not performance).
        return CpuPlan(target=tuple(allowed), loadgen=tuple(allowed))
    return default_split(allowed)
