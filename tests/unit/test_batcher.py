"""The batcher with a fake bundle (no server): batches form under concurrency, each caller
gets exactly its own answers, failures stay with their own requests, close() releases."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from targets.batcher import Batcher, BatcherClosed
from targets.batching import BatchingSpec, BatchLog, read_batch_log
from targets.bundles.protocol import Prediction
from targets.errors import RequestError

#: A row whose first value is this makes the fake model fail (as a non-finite output would).
POISON = -1.0


class EchoBundle:
    """Answers each row with its own first value as the label (so an answer names its
    input), after ``delay_s``; a batch holding a POISON row raises RequestError. Records
    the size of every forward pass."""

    name = "echo"
    input_shape = (2,)
    uses_torch = False

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.passes: list[int] = []
        self.threads: set[int] = set()
        self.fail_next: Exception | None = None
        self.started = threading.Event()

    def preprocess(self, batch: np.ndarray) -> Any:
        return batch

    def predict(self, inputs: Any) -> Any:
        self.passes.append(len(inputs))
        self.threads.add(threading.get_ident())
        self.started.set()
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if (inputs[:, 0] == POISON).any():
            raise RequestError(400, "poisoned row")
        return inputs

    def postprocess(self, outputs: Any) -> list[Prediction]:
        return [Prediction(int(row[0]), (float(row[1]),)) for row in outputs]


def rows(first: int, count: int) -> np.ndarray:
    """``count`` examples labelled first, first+1, ...; the second value names the request."""
    return np.array([[first + i, first] for i in range(count)], dtype=np.float32)


def labels(predictions: list[Prediction]) -> list[int]:
    return [p.label for p in predictions]


def concurrently(n: int, call: Callable[[int], Any]) -> list[Any]:
    """``call(i)`` for i in range(n) from n threads released at once; their results."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_submitters_share_forward_passes(tmp_path: Path) -> None:
    bundle = EchoBundle(delay_s=0.005)
    batcher = Batcher(bundle, BatchingSpec(max_batch=16, max_wait_ms=20),  # type: ignore[arg-type]
                      BatchLog(tmp_path))
    try:
        answers = concurrently(16, lambda i: [batcher.predict(rows(i * 10, 1))
                                              for _ in range(5)])
    finally:
        batcher.close()
    for i, mine in enumerate(answers):
        assert [labels(a) for a in mine] == [[i * 10]] * 5
    assert max(bundle.passes) > 1
    assert sum(bundle.passes) == 16 * 5
    log = read_batch_log(tmp_path)
    assert log[:, 2].sum() == 16 * 5  # every pass recorded, flushed by close()
    assert log[:, 1].max() > 1
    assert list(log[:, 2].astype(int)) == bundle.passes


def test_one_submitter_without_wait_runs_batches_of_one_in_its_own_thread() -> None:
    bundle = EchoBundle()
    batcher = Batcher(bundle, BatchingSpec(max_batch=16, max_wait_ms=0))  # type: ignore[arg-type]
    try:
        for i in range(50):
            assert labels(batcher.predict(rows(i, 1))) == [i]
    finally:
        batcher.close()
    assert bundle.passes == [1] * 50
    # Nothing to wait for: no hand-off to the model thread and back.
    assert bundle.threads == {threading.get_ident()}


def test_one_submitter_with_a_wait_hands_off_to_the_model_thread() -> None:
    bundle = EchoBundle()
    batcher = Batcher(bundle, BatchingSpec(max_batch=16, max_wait_ms=1))  # type: ignore[arg-type]
    try:
        for i in range(5):
            assert labels(batcher.predict(rows(i, 1))) == [i]
    finally:
        batcher.close()
    assert bundle.passes == [1] * 5
    assert threading.get_ident() not in bundle.threads


@pytest.mark.parametrize("wait_ms", [0, 5])
def test_every_caller_gets_exactly_its_own_answers(wait_ms: float) -> None:
    bundle = EchoBundle(delay_s=0.002)
    batcher = Batcher(bundle, BatchingSpec(max_batch=8, max_wait_ms=wait_ms))  # type: ignore[arg-type]
    sizes = [random.Random(i).choice([1, 1, 2, 3, 5, 8, 11]) for i in range(64)]
    order = list(range(64))
    random.Random(0).shuffle(order)
    try:
        answers = concurrently(64, lambda k: batcher.predict(rows(order[k] * 100,
                                                                  sizes[order[k]])))
    finally:
        batcher.close()
    for k, predictions in enumerate(answers):
        i = order[k]
        assert labels(predictions) == [i * 100 + j for j in range(sizes[i])]
        assert {p.probabilities for p in predictions} == {(float(i * 100),)}
    assert max(bundle.passes) > 1
    # Never split, never past max_batch unless a request alone is larger.
    assert all(n <= 8 or n == 11 for n in bundle.passes)
    assert sum(bundle.passes) == sum(sizes)


def test_a_failing_request_fails_alone() -> None:
    bundle = EchoBundle(delay_s=0.005)
    batcher = Batcher(bundle, BatchingSpec(max_batch=16, max_wait_ms=50))  # type: ignore[arg-type]

    def call(i: int) -> Any:
        batch = rows(i, 1)
        if i == 3:
            batch[0, 0] = POISON
        try:
            return labels(batcher.predict(batch))
        except RequestError as exc:
            return exc.message

    try:
        answers = concurrently(8, call)
    finally:
        batcher.close()
    assert answers == [[0], [1], [2], "poisoned row", [4], [5], [6], [7]]
    assert max(bundle.passes) > 1  # they did share a pass, which failed


def test_a_model_exception_fails_only_its_batch() -> None:
    bundle = EchoBundle()
    batcher = Batcher(bundle, BatchingSpec(max_batch=4, max_wait_ms=0))  # type: ignore[arg-type]
    try:
        bundle.fail_next = RuntimeError("model broke")
        with pytest.raises(RuntimeError, match="model broke"):
            batcher.predict(rows(1, 1))
        assert labels(batcher.predict(rows(2, 2))) == [2, 3]
    finally:
        batcher.close()


def test_close_releases_waiters() -> None:
    bundle = EchoBundle(delay_s=0.3)
    batcher = Batcher(bundle, BatchingSpec(max_batch=1, max_wait_ms=0))  # type: ignore[arg-type]
    outcomes: dict[int, Any] = {}

    def call(i: int) -> None:
        try:
            outcomes[i] = labels(batcher.predict(rows(i, 1)))
        except BatcherClosed as exc:
            outcomes[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert bundle.started.wait(5)
    others = [threading.Thread(target=call, args=(i,)) for i in (1, 2, 3)]
    for thread in others:
        thread.start()
    time.sleep(0.05)  # queued behind the pass in progress
    started = time.monotonic()
    batcher.close()
    for thread in [first, *others]:
        thread.join(5)
        assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert outcomes[0] == [0]  # the pass in progress answered
    assert all(isinstance(outcomes[i], BatcherClosed) for i in (1, 2, 3))
    assert bundle.passes == [1]
    with pytest.raises(BatcherClosed):
        batcher.predict(rows(9, 1))


def test_apredict_never_blocks_the_event_loop() -> None:
    bundle = EchoBundle(delay_s=0.05)
    batcher = Batcher(bundle, BatchingSpec(max_batch=32, max_wait_ms=500))  # type: ignore[arg-type]
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    async def main() -> list[list[int]]:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        answers = await asyncio.gather(*(batcher.apredict(rows(i, 2)) for i in range(16)))
        stop.set()
        await tick
        return [labels(a) for a in answers]

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    assert answers == [[i, i + 1] for i in range(16)]
    assert bundle.passes == [32]  # 16 requests of 2 examples: one full pass
    assert ticks >= 5  # the loop ran on during the 50 ms pass


def test_apredict_raises_its_own_error() -> None:
    batcher = Batcher(EchoBundle(), BatchingSpec(max_wait_ms=0))  # type: ignore[arg-type]
    batch = rows(0, 1)
    batch[0, 0] = POISON
    try:
        with pytest.raises(RequestError, match="poisoned"):
            asyncio.run(batcher.apredict(batch))
    finally:
        batcher.close()


class BrokenLog(BatchLog):
    """A batch log whose writes fail as on a full disk."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.breaks = True

    def record(self, requests: int, examples: int) -> None:
        if self.breaks:
            self.breaks = False
            raise OSError(28, "No space left on device")
        super().record(requests, examples)


def test_a_failure_outside_the_model_fails_its_callers_and_the_thread_serves_on(
        tmp_path: Path) -> None:
    """A pass that raises where no caller's request is to blame (here its log) must not
    kill the model thread: its callers get the error, and the next request is served."""
    batcher = Batcher(EchoBundle(), BatchingSpec(max_batch=16, max_wait_ms=1),  # type: ignore[arg-type]
                      BrokenLog(tmp_path))
    try:
        with pytest.raises(OSError, match="No space"):
            batcher.predict(rows(0, 1))
        assert labels(batcher.predict(rows(7, 1))) == [7]
    finally:
        batcher.close()


def test_the_log_stops_on_a_disk_error_and_serving_goes_on(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    log = BatchLog(tmp_path)
    log.record(1, 1)
    assert log._file is not None
    log._file.close()  # every later write fails (ValueError is not OSError: use a real one)
    log._file = open("/dev/full", "w", encoding="ascii")  # noqa: SIM115
    for _ in range(5000):  # enough to fill the buffer and force a write
        log.record(1, 1)
    log.flush()
    assert "no more batches are logged" in capsys.readouterr().err
    log.record(1, 1)  # after giving up: silently nothing
    log.close()
