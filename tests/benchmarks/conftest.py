"""Micro-benchmarks (pytest-benchmark), run by `tox -e bench` or
`.venv/bin/pytest tests/benchmarks --benchmark-autosave`, never by the default test run
(tests/ does not recurse into this folder).

Pinned as a run is: the servers on the target CPUs, this process (the client) on the
load generator's, so a round trip is not a client and a server taking turns on one core.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.cpus import CpuPlan, default_split
from targets.bundles.resolve import get_bundle


@pytest.fixture(scope="session")
def cpus() -> Iterator[CpuPlan]:
    allowed = sorted(os.sched_getaffinity(0))
    plan = default_split(allowed) if len(allowed) > 1 else CpuPlan(tuple(allowed),
                                                                   tuple(allowed))
    os.sched_setaffinity(0, plan.loadgen)
    yield plan
    os.sched_setaffinity(0, allowed)


@pytest.fixture(scope="session")
def vision(bundle_cache):  # type: ignore[no-untyped-def]

    bundle = get_bundle("vision")
    bundle.load()
    return bundle
