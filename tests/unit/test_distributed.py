"""The master's side of --loadgen-workers, without processes: merging, epochs, draining."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.cli import main
from harness.loadgen.recorder import SampleRecorder
from harness.loadgen.resources import CpuReading
from harness.loadgen.stagekit import StageError
from harness.loadgen.swarm.master import DistributedMeter, RemoteControl
from harness.loadgen.swarm.messages import ARRAYS, DRAIN, DRAINED, RESET, SAMPLES, parse_master


class FakeRunner:
    def __init__(self) -> None:
        self.listeners: dict[str, Any] = {}
        self.sent: list[tuple[str, Any]] = []

    def register_message(self, kind: str, listener: Any, concurrent: bool = False) -> None:
        self.listeners[kind] = listener

    def send_message(self, kind: str, data: Any = None) -> None:
        self.sent.append((kind, data))

    def deliver(self, kind: str, node: str, data: dict[str, Any]) -> None:
        self.listeners[kind](environment=None, msg=SimpleNamespace(node_id=node, data=data))


def samples(epoch: int, latencies: list[float], settled: int = 1) -> dict[str, Any]:
    n = len(latencies)
    data: dict[str, Any] = {name: [0] * n for name, _ in ARRAYS}
    data.update(epoch=epoch, settled=settled, cpu_s=1.0, at=1.0, latency_ms=latencies,
                start_s=[100.0 + i for i in range(n)], ok=[1] * n)
    return data


def test_samples_of_every_worker_are_merged_and_stale_ones_dropped() -> None:
    runner, recorder = FakeRunner(), SampleRecorder()
    control = RemoteControl(runner, 2, recorder, drain_timeout_s=5.0)
    control.reset()
    assert runner.sent == [(RESET, {"epoch": 1})]
    runner.deliver(SAMPLES, "a", samples(1, [1.0, 2.0]))
    runner.deliver(SAMPLES, "b", samples(1, [3.0], settled=2))
    runner.deliver(SAMPLES, "b", samples(0, [99.0]))  # the previous stage's: dropped
    assert list(recorder.latency_ms) == [1.0, 2.0, 3.0]
    assert control.counts == {"a": 2, "b": 1}
    assert control.settled() == 3

    control.draining = True
    assert runner.sent[-1] == (DRAIN, {"epoch": 1, "timeout_s": 5.0})
    runner.deliver(DRAINED, "a", {"epoch": 1, "unanswered": [], "error_kinds": {},
                                  "index": 0, "samples": 2})
    assert not control.drained()
    with pytest.raises(StageError, match="1 of 2 load-generator workers did not report"):
        control.unanswered()
    runner.deliver(DRAINED, "b", {"epoch": 1, "unanswered": [105.0],
                                  "error_kinds": {"HTTP 500": 2}, "index": 1, "samples": 2})
    assert control.drained()
    assert control.unanswered() == [105.0]
    # Each worker's own count, in worker order (b's includes its unanswered request).
    assert control.worker_samples() == [2, 2]
    assert recorder.error_kinds["HTTP 500"] == 2
    # A late report once the stage is closed changes nothing.
    recorder.closed = True
    runner.deliver(DRAINED, "b", {"epoch": 1, "unanswered": [1.0], "error_kinds": {"x": 1},
                                  "index": 1, "samples": 9})
    assert control.worker_samples() == [2, 2]


def test_the_busiest_worker_or_the_shared_cores_set_the_load_generator_cpu() -> None:
    before = CpuReading({}, 3.0, {"a": (1.0, 10.0), "b": (2.0, 10.0)})
    # b used 1.9 s of CPU over its own 2 s between readings: 95% of a core.
    after = CpuReading({}, 5.4, {"a": (1.5, 12.0), "b": (3.9, 12.0)})
    assert after.loadgen_percent(before, 2.0, cores=2) == pytest.approx(95.0)
    # Two workers at ~48% each on ONE shared core: the core was full.
    shared = CpuReading({}, 5.9, {"a": (2.45, 13.0), "b": (3.45, 13.0)})
    assert shared.loadgen_percent(before, 3.0, cores=1) == pytest.approx(96.7, abs=0.1)
    assert CpuReading({}, 1.5).loadgen_percent(CpuReading({}, 0.5), 2.0) == 50.0


def test_a_remote_workers_cpu_is_not_this_machines() -> None:
    """The shared-cores rule adds only the workers this machine runs; a worker elsewhere
    counts as itself (the busiest-worker rule)."""
    control = SimpleNamespace(cpu_s={"here": (2.0, 1.0), "there": (7.0, 1.0)},
                              local_nodes=lambda: {"here"})
    meter = SimpleNamespace(cpu=lambda: CpuReading({}, 1.0))
    reading = DistributedMeter(meter, control).cpu()  # type: ignore[arg-type]
    assert reading.loadgen_s == 3.0
    assert set(reading.workers) == {"here", "there"}


@pytest.mark.parametrize(("argv", "problem"), [
    (["--targets", "flask", "--loadgen-remote-workers", "1"],
     "remote load-generator workers cannot reach flask"),
    (["--endpoint", "k=http://10.0.0.5:8000", "--loadgen-remote-workers", "1",
      "--loadgen-master", "10.0.0.1"], "is not HOST:PORT"),
    (["--endpoint", "k=http://10.0.0.5:8000", "--loadgen-master", "0.0.0.0:5557"],
     "--loadgen-master is for --loadgen-remote-workers"),
])
def test_remote_workers_are_refused_where_they_cannot_work(
        argv: list[str], problem: str, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    assert main(["run", "--out", str(tmp_path / "run"), *argv]) == 1
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_master_addresses_parse() -> None:
    assert parse_master("0.0.0.0:5557") == ("0.0.0.0", 5557)
    assert parse_master("[::1]:5557") == ("::1", 5557)
    for bad in ("5557", "host:", "host:99999", ":5557"):
        with pytest.raises(ValueError, match="is not HOST:PORT"):
            parse_master(bad)
