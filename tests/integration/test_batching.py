"""Dynamic batching in the real servers (Flask under gunicorn, FastAPI under uvicorn, gRPC
sync and aio) on digits: concurrent clients share forward passes, as the batch log shows,
and each still gets exactly the in-process answer for its own input; one client alone is
never batched."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cpus import CpuPlan
from targets.batching import BatchingSpec, read_batch_log
from targets.bundles.protocol import compare_predictions, serve_batch
from targets.fastapi.target import FastapiTarget
from targets.flask.target import FlaskTarget
from targets.grpc.target import GrpcTarget
from targets.served import ServedTarget

pytestmark = pytest.mark.integration

KINDS = ("flask", "fastapi", "grpc-sync", "grpc-aio")
CLIENTS = 16
REQUESTS_PER_CLIENT = 12


def make_target(kind: str, cpus: CpuPlan, log_path: Path,
                batching: BatchingSpec) -> ServedTarget[Any]:
    common: dict[str, Any] = {"workers": 1, "log_path": log_path, "batching": batching}
    if kind == "flask":
        return FlaskTarget("digits", list(cpus.target), "binary", **common)
    if kind == "fastapi":
        return FastapiTarget("digits", list(cpus.target), "binary", **common)
    return GrpcTarget("digits", list(cpus.target), "grpc", api=kind.removeprefix("grpc-"),
                      **common)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def requests_for(digits: Any, count: int, seed: int) -> list[np.ndarray]:
    """``count`` shuffled requests of 1 to 3 digits' examples (so answers are split back
    at different offsets)."""
    examples = digits.example_requests()
    rng = random.Random(seed)
    return [np.concatenate(rng.sample(examples, rng.choice([1, 1, 2, 3])))
            for _ in range(count)]


def drive(target: ServedTarget[Any], per_client: list[list[np.ndarray]]
          ) -> list[list[Any]]:
    """Each list of requests sent in order by its own client thread, all at once; each
    thread's answers (or the exception that stopped it)."""
    answers: list[list[Any]] = [[] for _ in per_client]
    barrier = threading.Barrier(len(per_client))

    def client(index: int) -> None:
        own = target.make_client()
        try:
            barrier.wait()
            for batch in per_client[index]:
                answers[index].append(own.predict(batch))
        except Exception as exc:  # reported by the assertions below
            answers[index].append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(per_client))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def logged(folder: Path, examples: int) -> np.ndarray:
    """The batch log once it accounts for ``examples`` (workers flush it when idle)."""
    deadline = time.monotonic() + 10
    while True:
        log = read_batch_log(folder)
        if log[:, 2].sum() >= examples or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def assert_own_answers(digits: Any, per_client: list[list[np.ndarray]],
                       answers: list[list[Any]]) -> None:
    for sent, got in zip(per_client, answers, strict=True):
        assert len(got) == len(sent), got[-1]
        for batch, predictions in zip(sent, got, strict=True):
            problem, _ = compare_predictions(serve_batch(digits, batch), predictions)
            assert problem is None, problem


def test_concurrent_clients_are_batched_and_each_gets_its_own_answers(
        kind: str, cpus: CpuPlan, digits: Any, tmp_path: Path) -> None:
    per_client = [requests_for(digits, REQUESTS_PER_CLIENT, seed) for seed in range(CLIENTS)]
    with make_target(kind, cpus, tmp_path / f"{kind}.log",
                     BatchingSpec(max_batch=32, max_wait_ms=5)) as target:
        assert target.batch_log_dir == tmp_path / f"{target.name}-batches"
        assert target.describe()["batching"] == "max_batch=32,max_wait_ms=5"
        # A thread per request waiting in a batch, where the server needs one (FastAPI's
        # event loop holds them: its pool keeps its size, unused by the batcher).
        assert target.threads >= 32 if kind != "fastapi" else target.threads == 2
        answers = drive(target, per_client)
        examples = sum(len(b) for sent in per_client for b in sent)
        log = logged(target.batch_log_dir, examples)
    assert_own_answers(digits, per_client, answers)
    # Every request served in exactly one logged pass (health checks do not predict).
    assert log[:, 1].sum() == sum(len(sent) for sent in per_client)
    assert log[:, 2].sum() == examples
    assert log[:, 1].max() > 1, f"no batch of more than one request: {log[:, 1]}"
    assert log[:, 2].max() <= 32


def test_one_client_without_wait_is_never_batched(kind: str, cpus: CpuPlan, digits: Any,
                                                  tmp_path: Path) -> None:
    per_client = [requests_for(digits, 40, seed=99)]
    with make_target(kind, cpus, tmp_path / f"{kind}.log",
                     BatchingSpec(max_batch=16, max_wait_ms=0)) as target:
        answers = drive(target, per_client)
        examples = sum(len(b) for b in per_client[0])
        assert target.batch_log_dir is not None
        log = logged(target.batch_log_dir, examples)
    assert_own_answers(digits, per_client, answers)
    assert len(log) == 40
    assert set(log[:, 1].astype(int)) == {1}
    assert list(log[:, 2].astype(int)) == [len(b) for b in per_client[0]]
