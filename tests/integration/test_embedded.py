"""The in-process driver (harness.loadgen.embedded): the application's own handler threads call
the model, and the figures are the model's, not a load generator's.

A bundle with a known, fixed CPU cost per call (tests/fixtures/bundles/fixed_service.py)
pins down what the driver must report; the digits bundle checks parity through the very
threads that are measured.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.analysis.validity import LATE_LIMIT
from harness.loadgen.launch import LoadJob, plan_document
from harness.parity import ParityError
from targets.bundles.protocol import Prediction, serve_batch
from targets.bundles.resolve import get_bundle
from targets.inprocess.target import InProcessTarget
from tests.fixtures.bundles import fixed_service, fixed_service_nogil
from tests.integration.stages import drive, one_window

pytestmark = pytest.mark.integration

FIXED = str(Path(fixed_service.__file__).resolve())
SERVICE_MS = fixed_service.SERVICE_S * 1000.0
#: The same cost, spent with the GIL released (as torch spends most of its time): the
#: threads then hand the GIL over between calls, where a wait must still be counted.
NOGIL = str(Path(fixed_service_nogil.__file__).resolve())


@pytest.fixture
def one_cpu(cpus: CpuPlan) -> CpuPlan:
    """The target on exactly one CPU (the load generator's own elsewhere when it can)."""
    return CpuPlan(target=cpus.target[:1], loadgen=cpus.loadgen)


def run_fixed(cpus: CpuPlan, tmp_path: Path, bundle_path: str = FIXED,
              **stage: object) -> dict:  # type: ignore[type-arg]
    bundle = get_bundle(bundle_path)
    examples = bundle.example_requests()
    reference = [serve_batch(bundle, e) for e in examples]
    with InProcessTarget(bundle_path, list(cpus.target)) as target:
        result = drive("inprocess", target.load_spec(examples), list(cpus.loadgen),
                       tmp_path, one_window(**stage), reference=reference)
    assert result.error is None
    assert result.parity is not None
    assert result.parity["ok"]
    [raw] = result.stages
    return summarize_stage(raw)  # type: ignore[return-value]


def test_one_user_measures_the_call_itself(one_cpu: CpuPlan, tmp_path: Path) -> None:
    stage = run_fixed(one_cpu, tmp_path, concurrency=(1,), window_s=2.5)
    assert stage["errors"] == 0
    lat = stage["latency_ms"]
    assert lat is not None
    # The call's own cost, not a hand-off's: within 5% of the fixed service time.
    assert lat["p50"] == pytest.approx(SERVICE_MS, rel=0.05)
    assert stage["rps"] == pytest.approx(1000.0 / SERVICE_MS, rel=0.10)
    # No Locust in this process: no cross-check figures, and the target's CPU is the
    # handler threads' (the driver's own thread sleeps between window edges).
    assert stage["locust"] == {}
    assert (stage["target_cpu_percent"] or 0) > 80
    assert (stage["loadgen_cpu_percent"] or 0) < 20


@pytest.mark.parametrize("bundle_path", [FIXED, NOGIL], ids=["holds the GIL", "releases it"])
def test_users_on_one_cpu_share_it(one_cpu: CpuPlan, tmp_path: Path, bundle_path: str) -> None:
    users = 4
    stage = run_fixed(one_cpu, tmp_path, bundle_path, concurrency=(users,), window_s=3.0)
    assert stage["errors"] == 0
    # Four handler threads on one CPU complete what the CPU can do between them...
    assert stage["rps"] == pytest.approx(1000.0 / SERVICE_MS, rel=0.10)
    # ...and each call waits for the others: latency grows with the users (Little's law:
    # mean latency = users / throughput).
    samples_mean = users * 1000.0 / stage["rps"]
    assert stage["latency_ms"] is not None
    assert stage["latency_ms"]["mean"] == pytest.approx(samples_mean, rel=0.15)


def test_open_loop_at_a_light_rate(one_cpu: CpuPlan, tmp_path: Path) -> None:
    rate = 100.0
    stage = run_fixed(one_cpu, tmp_path, concurrency=(), rate=(rate,), window_s=3.0,
                      max_inflight=8)
    assert stage["mode"] == "open"
    assert stage["errors"] == 0
    open_loop = stage["open_loop"]
    assert open_loop["unsent"] == 0
    # 20% of one CPU: a free thread for every arrival. Not exactly none: a stall of the
    # whole process (a busy CI machine) longer than the 8 in flight cover (~80 ms here)
    # makes the next arrivals wait, as it would in any application; the figure stays
    # under the share that marks the stage "offered rate not sustained".
    assert open_loop["queued"] <= LATE_LIMIT * stage["requests"]
    service = open_loop["service_latency_ms"]
    assert service is not None
    assert service["p50"] >= SERVICE_MS * 0.95


def test_open_loop_samples_are_the_schedule(one_cpu: CpuPlan, tmp_path: Path) -> None:
    """Every arrival of the seeded schedule is sent once, filed under its intended time,
    never before it; latency counts from that time."""
    rate = 100.0
    bundle = get_bundle(FIXED)
    examples = bundle.example_requests()
    with InProcessTarget(FIXED, list(one_cpu.target)) as target:
        result = drive("inprocess", target.load_spec(examples), list(one_cpu.loadgen),
                       tmp_path, one_window(concurrency=(), rate=(rate,), window_s=2.0,
                                            max_inflight=8))
    [raw] = result.stages
    starts = np.sort(raw.start_s)
    rng = random.Random(0)  # the first open stage of trial 0 takes the scenario's seed
    gaps = [rng.expovariate(rate) for _ in range(len(starts))]
    np.testing.assert_allclose(np.diff(starts), gaps[1:], atol=1e-6)
    assert (raw.send_delay_ms >= 0).all()
    assert (raw.latency_ms >= SERVICE_MS * 0.95).all()
    assert (raw.latency_ms >= raw.send_delay_ms).all()


def test_parity_is_checked_through_the_handler_threads(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    examples = digits.example_requests()
    reference = [serve_batch(digits, e) for e in examples]
    with InProcessTarget("digits", list(cpus.target)) as target:
        result = drive("inprocess", target.load_spec(examples), list(cpus.loadgen),
                       tmp_path, reference=reference)
    assert result.error is None
    assert result.parity is not None
    assert result.parity["ok"]
    assert result.parity["examples"] == 64
    assert "handler threads" in result.parity["reference"]
    assert result.info["load_s"] > 0
    [raw] = result.stages
    stage = summarize_stage(raw)
    assert stage["errors"] == 0
    assert stage["requests"] >= 300


def test_parity_mismatch_stops_before_load(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                           tmp_path: Path) -> None:
    examples = digits.example_requests()
    reference = [serve_batch(digits, e) for e in examples]
    reference[5] = [Prediction((reference[5][0].label + 1) % 10, reference[5][0].probabilities)]
    mismatch = r"inprocess predicts class \d, in-process predicts \d on example 5"
    with InProcessTarget("digits", list(cpus.target)) as target, \
            pytest.raises(ParityError, match=mismatch):
        drive("inprocess", target.load_spec(examples), list(cpus.loadgen), tmp_path,
              reference=reference)


def test_no_locust_or_gevent_in_the_application(cpus: CpuPlan, tmp_path: Path) -> None:
    """The application's process imports neither (gevent would patch its threads)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys, runpy\n"
        "sys.argv = ['harness.loadgen.driver', sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_module('harness.loadgen.driver', run_name='__main__')\n"
        "finally:\n"
        "    print('LOADED', 'locust' in sys.modules, 'gevent' in sys.modules,\n"
        "          file=sys.stderr)\n")
    bundle = get_bundle(FIXED)
    job = LoadJob(target="inprocess", spec=InProcessTarget(FIXED, list(cpus.target))
                  .load_spec(bundle.example_requests()),
                  scenario=one_window(concurrency=(1,), window_s=0.5, warmup_s=0.1),
                  loadgen_cpus=list(cpus.loadgen), work_dir=tmp_path, log_path=tmp_path / "l")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(plan_document(job).to_json()))
    done = subprocess.run([sys.executable, str(probe), str(plan)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED False False" in done.stderr
    assert psutil.Process().children() == []
