"""Monitoring inside the real servers (#22): started with ``--metrics`` and
``--log-predictions 1.0``, sent good and bad requests through their clients, scraped.

The target's own count must equal what was sent (its health checks not counted), the
errors the bad requests, across two worker processes on one CPU (prometheus_client's
multiprocess mode); the log must hold one row per good request, and read back to the
answers the server gave."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest

from harness.cpus import CpuPlan
from harness.loadgen.embedded import Application
from targets.batching import BatchingSpec
from targets.bundles.protocol import Prediction, serve_batch
from targets.fastapi.target import FastapiTarget
from targets.flask.target import FlaskTarget
from targets.grpc.client import request_message
from targets.grpc.target import GrpcTarget
from targets.monitoring import MODEL_INFO, Monitoring, parse_scrape
from targets.predlog import count_rows, read_log

pytestmark = pytest.mark.integration

TARGETS: dict[str, Any] = {"flask": FlaskTarget, "fastapi": FastapiTarget, "grpc": GrpcTarget}
GOOD, BAD = 12, 3
ON = Monitoring(metrics=True, log_rate=1.0)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def count_rows_of(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])


def _serving(text: str) -> float:
    """Processes serving, from MODEL_INFO (a live-sum gauge over the workers)."""
    return sum(float(v) for v in re.findall(rf"^{MODEL_INFO}\{{[^}}]*\}} (\S+)$", text,
                                            re.M))


def _bad_request(target: Any) -> None:
    """One request the server refuses as the client's mistake."""
    if isinstance(target, GrpcTarget):
        wrong = request_message(np.zeros((1, 3), dtype=np.float32))  # not digits' shape
        with pytest.raises(grpc.RpcError) as caught:
            target.client.call(wrong)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return
    status, _ = target.request(json.dumps({"wrong": 1}).encode(),
                               {"Content-Type": "application/json"})
    assert status == 400


def _same(a: tuple[int, tuple[float, ...]], b: Prediction) -> bool:
    return a[0] == b.label and np.allclose(a[1], b.probabilities, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_counts_and_log_across_two_workers(name: str, cpus: CpuPlan, digits: Any,
                                           tmp_path: Path) -> None:
    examples = digits.example_requests()
    target = TARGETS[name]("digits", [cpus.target[0]], "json", workers=2,
                           log_path=tmp_path / f"{name}.log", monitoring=ON)
    answers: dict[bytes, list[Prediction]] = {}
    with target:
        url = target.metrics_url
        assert url is not None
        if name == "grpc":
            assert f":{target.port}/" not in url  # the side port
        # Both workers up (the server is healthy once one is): each renders both's metrics.
        deadline = time.monotonic() + 60
        while _serving(_scrape(url)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = parse_scrape(_scrape(url), time.time())
        # Each request on a new connection, until both workers have answered some: which
        # one answers a connection is the kernel's choice; its health check says.
        answered: dict[int, int] = {}
        sent = 0
        while sent < GOOD or (len(answered) < 2 and sent < 60):
            target.client.close()
            pid = target.client.probe().pid
            example = examples[sent % len(examples)]
            answers[example.tobytes()] = target.predict(example)  # the same connection
            answered[pid] = answered.get(pid, 0) + 1
            sent += 1
        assert len(answered) == 2, f"one worker answered all {sent} connections"
        for _ in range(BAD):
            _bad_request(target)
        assert target.health()  # health checks are never counted
        text = _scrape(url)
        after = parse_scrape(text, time.time())
        folder = target.prediction_log_dir
    assert folder is not None
    assert folder.parent == tmp_path  # beside the server's log
    counted = after.since(before)
    assert counted.requests == sent + BAD  # both workers' counts, added up
    assert counted.errors == BAD
    assert counted.latency_count == sent + BAD
    assert counted.latency_sum_s > 0
    assert sum(n for le, n in counted.buckets if le == float("inf")) == sent + BAD
    assert _serving(text) == 2
    # The log, flushed at the workers' exit: one row per good request, as answered, in
    # the database of the worker that answered it.
    assert count_rows(folder) == sent
    for pid, requests in answered.items():
        assert count_rows_of(folder / f"predictions-{pid}.sqlite") == requests
    rows = list(read_log(folder))
    assert {row.model_version for row in rows} == {rows[0].model_version}
    assert rows[0].model_version.startswith("digits@")
    for row in rows:
        answer = answers[np.ascontiguousarray(row.input, dtype=np.float32).tobytes()]
        assert len(row.output) == len(answer)
        assert all(_same(a, b) for a, b in zip(row.output, answer, strict=True))



VARIANTS = {"flask-batching": (FlaskTarget, {}), "fastapi-batching": (FastapiTarget, {}),
            "grpc-aio-batching": (GrpcTarget, {"api": "aio"}),
            "grpc-aio": (GrpcTarget, {"api": "aio", "batching": None})}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_batching_and_aio_count_and_log(variant: str, cpus: CpuPlan, digits: Any,
                                        tmp_path: Path) -> None:
    """Under --batching the batcher observes each forward pass and every request is
    logged with its own predictions; gRPC's aio server counts as the sync one."""
    cls, options = VARIANTS[variant]
    options = {"batching": BatchingSpec(max_batch=8, max_wait_ms=2), **options}
    examples = digits.example_requests()
    target = cls("digits", [cpus.target[0]], "json", workers=1,
                 log_path=tmp_path / "server.log", monitoring=ON, **options)
    answers: dict[bytes, list[Prediction]] = {}
    with target:
        url = target.metrics_url
        before = parse_scrape(_scrape(url), time.time())
        for example in examples[:GOOD]:
            answers[example.tobytes()] = target.predict(example)
        _bad_request(target)
        text = _scrape(url)
        counted = parse_scrape(text, time.time()).since(before)
        folder = target.prediction_log_dir
    assert counted.requests == min(GOOD, len(examples)) + 1
    assert counted.errors == 1
    model_passes = re.search(r"^deploybench_batch_examples_count (\S+)$", text, re.M)
    assert model_passes is not None
    assert float(model_passes.group(1)) >= len(answers)
    rows = list(read_log(folder))
    assert len(rows) == len(answers)
    for row in rows:
        answer = answers[np.ascontiguousarray(row.input, dtype=np.float32).tobytes()]
        assert all(_same(a, b) for a, b in zip(row.output, answer, strict=True))


def test_inprocess_application_counts_and_logs(cpus: CpuPlan, digits: Any,
                                               tmp_path: Path) -> None:
    """The in-process application (harness.loadgen.embedded): its handler threads observe
    the default registry (what the load generator scrapes, INPROCESS_URL) and log in the
    background, flushed when it closes."""
    before = parse_scrape(generate_latest().decode(), time.time()) \
        if b"deploybench_requests" in generate_latest() else None
    app = Application("digits", [cpus.target[0]], None, ON, str(tmp_path / "log"))
    try:
        app.reserve(2)  # thread 0 answers every example, thread 1 its first
    finally:
        app.stop()
        app.close()
    # Thread 0's check is the run's parity check, served through the monitor; thread 1's
    # comes inside a stage and is no user's request: it bypasses the monitor.
    sent = len(digits.example_requests())
    after = parse_scrape(generate_latest().decode(), time.time())
    counted = after.since(before) if before is not None else after
    assert counted.requests == sent
    assert counted.errors == 0
    assert count_rows(tmp_path / "log") == sent
    examples = {e.tobytes(): e for e in digits.example_requests()}
    for row in read_log(tmp_path / "log"):
        example = examples[np.ascontiguousarray(row.input, dtype=np.float32).tobytes()]
        assert _same(row.output[0], serve_batch(digits, example)[0])
