"""The Lambda emulator watched as in production: CloudWatch's metrics on /metrics and in
the per-minute file, and the handler's log of live predictions, with real environments."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cpus import CpuPlan
from targets.awslambda.target import LambdaTarget
from targets.monitoring import Monitoring, Scrape, parse_scrape
from targets.predlog import count_rows, model_version, read_log
from targets.wire import codec
from targets.wire.httpclient import HttpClient
from tests.integration.test_lambda import boto3_client

pytestmark = pytest.mark.integration

WATCHED = Monitoring(metrics=True, log_rate=1.0)

#: A model that takes a second per prediction: two requests at once overlap for sure.
SLOW_BUNDLE = """
import time

from targets.bundles.null import NullBundle


class Bundle(NullBundle):
    name = "slowish"

    def predict(self, inputs):
        time.sleep(1.0)
        return inputs
"""


def scrape(target: LambdaTarget) -> Scrape:
    assert target.metrics_url == f"http://127.0.0.1:{target.port}/metrics"
    with urllib.request.urlopen(target.metrics_url, timeout=10) as answer:
        assert answer.status == 200
        return parse_scrape(answer.read().decode(), at=time.time())


def post(target: LambdaTarget, batch: np.ndarray) -> tuple[int, bytes]:
    return target.request(*codec.encode_request(batch, "json"))


def test_metrics_and_prediction_log_count_what_was_sent(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    good = [rng.random((1 + i % 3, 64), dtype=np.float32) * 16 for i in range(12)]
    direct_good = [rng.random((1, 64), dtype=np.float32) * 16 for _ in range(3)]
    target = LambdaTarget("digits", list(cpus.target), "json", concurrency=2,
                          log_path=tmp_path / "lam.log",
                          records_path=tmp_path / "lam-invocations.jsonl", monitoring=WATCHED)
    assert target.cloudwatch_path == tmp_path / "lam-cloudwatch.jsonl"
    assert "--cloudwatch-file" in target.server_arguments()
    answers: list[Any] = []
    with target:
        assert target.describe()["cloudwatch_file"] == str(tmp_path / "lam-cloudwatch.jsonl")
        start = scrape(target)
        assert start.requests == 0  # the start's health checks are the emulator's: none
        for _ in range(3):
            assert target.health()
        for batch in good:
            status, body = post(target, batch)
            assert status == 200, body
            answers.append([(p.label, p.probabilities)
                            for p in codec.decode_predictions(body)])
        for bad in (np.zeros((1, 3), dtype=np.float32), np.zeros((2, 5), dtype=np.float32)):
            assert post(target, bad)[0] == 400  # the handler's answer: no function error
        client = boto3_client(target.url)
        for batch in direct_good:
            reply = client.invoke(FunctionName="deploybench",
                                  Payload=json.dumps({"inputs": batch.tolist()}))
            assert "FunctionError" not in reply
            answers.append([(p["label"], tuple(p["probabilities"]))
                            for p in json.loads(reply["Payload"].read())["predictions"]])
        for _ in range(2):  # a payload it cannot serve: an unhandled error, as on AWS
            reply = client.invoke(FunctionName="deploybench", Payload=b'{"inputs": [[1]]}')
            assert reply["FunctionError"] == "Unhandled"
        seen = scrape(target).since(start)
        prediction_dir = target.prediction_log_dir
    sent = len(good) + 2 + len(direct_good) + 2
    assert seen.requests == sent  # invocations; none throttled
    assert seen.errors == 2  # the two unhandled errors; the 400s were answers
    assert seen.latency_count == sent
    assert 0 < seen.latency_sum_s < 10
    # Only successful predictions are logged, each committed in its invocation.
    assert prediction_dir == tmp_path / "lambda-predictions"
    assert count_rows(prediction_dir) == len(good) + len(direct_good)
    logged = sorted(read_log(prediction_dir), key=lambda row: row.ts)
    version = model_version("digits", digits.info())
    for row, batch, answer in zip(logged, [*good, *direct_good], answers, strict=True):
        assert row.model_version == version
        np.testing.assert_array_equal(row.input, batch)
        assert [label for label, _ in row.output] == [label for label, _ in answer]
        for (_, logged_p), (_, answered_p) in zip(row.output, answer, strict=True):
            np.testing.assert_allclose(logged_p, answered_p, rtol=1e-6, atol=1e-9)
    # At exit the emulator wrote CloudWatch's view: its minutes add up to the same.
    lines = [json.loads(line) for line in
             (tmp_path / "lam-cloudwatch.jsonl").read_text().splitlines()]
    total = {metric: sum(line.get("Sum", 0) for line in lines if line["metric"] == metric)
             for metric in ("Invocations", "Errors", "Throttles")}
    assert total == {"Invocations": sent, "Errors": 2, "Throttles": 0}
    durations = [line for line in lines if line["metric"] == "Duration"]
    assert sum(line["SampleCount"] for line in durations) == sent
    assert all(line["Minimum"] <= line["p50"] <= line["p99"] <= line["Maximum"]
               for line in durations)
    assert max(line["Maximum"] for line in lines
               if line["metric"] == "ConcurrentExecutions") >= 1
    assert {line["period_s"] for line in lines} == {60.0}
    assert all(line["period_start"] % 60 == 0 for line in lines)


def test_a_throttle_is_a_request_and_an_error(cpus: CpuPlan, tmp_path: Path) -> None:
    bundle = tmp_path / "slowish.py"
    bundle.write_text(SLOW_BUNDLE)
    body, headers = codec.encode_request(np.zeros((1, 64), dtype=np.float32), "json")
    with LambdaTarget(str(bundle), list(cpus.target), "json", concurrency=1,
                      monitoring=Monitoring(metrics=True), log_path=tmp_path / "s.log",
                      records_path=tmp_path / "s-invocations.jsonl") as target:
        assert target.prediction_log_dir is None  # metrics only
        assert target.request(body, headers)[0] == 200  # warm: the next two overlap
        start = scrape(target)

        def call(_: int) -> int:
            client = HttpClient(target.host, target.port or 0, timeout_s=60)
            try:
                return client.request_full("POST", "/predict", body, headers)[0]
            finally:
                client.close()

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(call, range(2)))
        seen = scrape(target).since(start)
    assert statuses == [200, 429]
    assert seen.requests == 2  # one invocation, one throttle
    assert seen.errors == 1  # the throttle
    assert seen.latency_count == 1  # a throttle has no Duration
    lines = [json.loads(line) for line in
             (tmp_path / "s-cloudwatch.jsonl").read_text().splitlines()]
    assert sum(line["Sum"] for line in lines if line["metric"] == "Throttles") == 1
    assert max(line["Maximum"] for line in lines
               if line["metric"] == "ConcurrentExecutions") == 1
