"""The master's side of --loadgen-workers, without processes: merging, epochs, draining."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from harness.distributed import ARRAYS, DRAIN, DRAINED, RESET, SAMPLES, RemoteControl
from harness.recorder import SampleRecorder
from harness.resources import CpuReading


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
    data.update(epoch=epoch, settled=settled, cpu_s=1.0, latency_ms=latencies,
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
    runner.deliver(DRAINED, "a", {"epoch": 1, "unanswered": [], "error_kinds": {}})
    assert not control.drained()
    runner.deliver(DRAINED, "b", {"epoch": 1, "unanswered": [105.0],
                                  "error_kinds": {"HTTP 500": 2}})
    assert control.drained()
    assert control.unanswered() == [105.0]
    # The unanswered request is one of b's samples (the stage records it as a failure).
    assert control.counts == {"a": 2, "b": 2}
    assert recorder.error_kinds["HTTP 500"] == 2


def test_the_busiest_worker_sets_the_load_generator_cpu() -> None:
    before = CpuReading({}, 3.0, {"a": 1.0, "b": 2.0})
    after = CpuReading({}, 5.4, {"a": 1.5, "b": 3.9})
    assert after.loadgen_percent(before, 2.0) == 95.0  # b: 1.9 s of 2 s
    assert CpuReading({}, 1.5).loadgen_percent(CpuReading({}, 0.5), 2.0) == 50.0
