"""The Lambda emulator with the real awslambdaric runtime client and AWS's boto3 client."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import psutil
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from harness.cpus import CpuPlan
from harness.loadgen.analysis.serverless import summarize_invocations
from harness.loadgen.analysis.stats import summarize_stage
from harness.parity import check_parity
from reports.pricing import DEFAULT_PRICES
from targets.awslambda.environment import FunctionConfig
from targets.awslambda.function import EVENT_RETRY_DELAYS_S, LambdaFunction, Throttled
from targets.awslambda.target import LambdaTarget
from targets.bundles.protocol import serve_batch
from targets.wire import codec
from targets.wire.httpclient import HttpClient
from tests.integration.stages import drive, one_window

pytestmark = pytest.mark.integration

GOOD = json.dumps({"inputs": [[0.0] * 64]}).encode()


@pytest.fixture(scope="module")
def function(cpus: CpuPlan, digits, tmp_path_factory: pytest.TempPathFactory  # type: ignore[no-untyped-def]
             ) -> Iterator[LambdaTarget]:
    records = tmp_path_factory.mktemp("lambda") / "invocations.jsonl"
    with LambdaTarget("digits", list(cpus.target), "json", concurrency=3, keepalive_s=600,
                      records_path=records) as target:
        yield target


def boto3_client(url: str) -> Any:
    """AWS's own ``lambda`` client on the emulator's Invoke API: unsigned, no retries."""
    return boto3.client(
        "lambda", endpoint_url=url, region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, read_timeout=120,
                      retries={"total_max_attempts": 1}))


@pytest.fixture(scope="module")
def client(function: LambdaTarget) -> Any:
    return boto3_client(function.url)


def report_of(answer: dict[str, Any]) -> dict[str, str]:
    """The fields of this invocation's REPORT line in its log tail (LogType=Tail), as
    Lambda writes them: ``REPORT RequestId: ID<TAB>Key: value unit<TAB>...``."""
    log = base64.b64decode(answer["LogResult"]).decode()
    request_id = answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    [line] = [line for line in log.splitlines() if line.startswith("REPORT ")]
    head, *parts = line.rstrip("\t").split("\t")
    assert head == f"REPORT RequestId: {request_id}"
    fields = dict(part.split(": ", 1) for part in parts)
    assert len(fields) == len(parts)  # no field twice
    return fields


def number(value: str, unit: str) -> float:
    """``"12.34 ms"`` -> 12.34, checking the unit."""
    figure, _, got = value.partition(" ")
    assert got == unit, value
    return float(figure)


def test_sync_invoke_with_boto3(client: Any, digits) -> None:  # type: ignore[no-untyped-def]
    example = digits.example_requests()[3]
    answer = client.invoke(FunctionName="deploybench",
                           Payload=json.dumps({"inputs": example.tolist()}))
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    [prediction] = json.loads(answer["Payload"].read())["predictions"]
    assert prediction["label"] == serve_batch(digits, example)[0].label


def test_binary_direct_invoke_and_aws_emulator_name(client: Any) -> None:
    data = base64.b64encode(np.zeros((2, 64), dtype="<f4").tobytes()).decode()
    answer = client.invoke(FunctionName="function",  # the name AWS's own emulator serves
                           Payload=json.dumps({"data": data, "shape": [2, 64]}))
    assert len(json.loads(answer["Payload"].read())["predictions"]) == 2


def test_log_tail_has_the_report_line(client: Any, function: LambdaTarget) -> None:
    function.reset()  # the next invocation is a cold start
    cold = report_of(client.invoke(FunctionName="deploybench", Payload=GOOD, LogType="Tail"))
    for _ in range(210):  # past the environment's 200-line log buffer
        client.invoke(FunctionName="deploybench", Payload=GOOD)
    answer = client.invoke(FunctionName="deploybench", Payload=GOOD, LogType="Tail")
    log = base64.b64decode(answer["LogResult"]).decode()
    request_id = answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert f"START RequestId: {request_id}" in log
    assert f"END RequestId: {request_id}" in log
    assert log.count("START RequestId:") == 1  # this invocation's lines only
    warm = report_of(answer)
    # Cloud field order; Init Duration only on the cold start, last.
    assert list(warm) == ["Duration", "Billed Duration", "Memory Size", "Max Memory Used"]
    assert list(cold) == [*warm, "Init Duration"]
    for report in (cold, warm):
        assert number(report["Memory Size"], "MB") == function.memory_mb
        # The real peak RSS of a Python process that imported torch and loaded the model
        # (not Memory Size, as AWS's own emulator reports it).
        used = number(report["Max Memory Used"], "MB")
        assert 50 < used < function.memory_mb
    # Billed at 1 ms: Duration rounded up (Duration is printed to 0.01 ms, so the bill
    # may be 1 ms above the printed figure's ceiling) ...
    duration = number(warm["Duration"], "ms")
    billed = number(warm["Billed Duration"], "ms")
    assert billed == int(billed)
    assert math.ceil(duration) <= billed <= math.ceil(duration) + 1
    # ... and on a cold start Init too, as billed since August 2025.
    duration, init = number(cold["Duration"], "ms"), number(cold["Init Duration"], "ms")
    billed = number(cold["Billed Duration"], "ms")
    assert init > 50  # a new process importing torch and loading the model
    assert math.ceil(duration) <= billed
    assert duration + init - 0.02 <= billed <= math.ceil(duration + init) + 1


def test_event_and_dry_run(client: Any, function: LambdaTarget) -> None:
    before = len(function.platform_records())
    assert client.invoke(FunctionName="deploybench", InvocationType="Event",
                         Payload=GOOD)["StatusCode"] == 202
    assert client.invoke(FunctionName="deploybench", InvocationType="DryRun",
                         Payload=GOOD)["StatusCode"] == 204
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the queued event runs soon after
        events = [r for r in function.platform_records()[before:] if r["source"] == "event"]
        if events:
            break
        time.sleep(0.05)
    assert [r["outcome"] for r in events] == ["ok"]


def test_handler_exception_is_a_function_error(client: Any) -> None:
    answer = client.invoke(FunctionName="deploybench",
                           Payload=json.dumps({"inputs": [[1.0, 2.0]]}))
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "InvalidRequest"
    assert "shape" in error["errorMessage"]
    # The environment survives a handled error: the next call is warm and good.
    assert "FunctionError" not in client.invoke(FunctionName="deploybench", Payload=GOOD)


def test_unknown_function_and_bad_payload(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="other", Payload=GOOD)
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="deploybench", Payload=b"{not json")


def test_parity_through_the_function_url(function: LambdaTarget, digits) -> None:  # type: ignore[no-untyped-def]
    examples = digits.example_requests()
    result = check_parity(function, examples, [serve_batch(digits, e) for e in examples])
    assert result["ok"]


def test_concurrent_requests_scale_out_then_throttle(function: LambdaTarget) -> None:
    """Limit 3: from no environment, 4 requests at once give 3 cold starts and one 429."""
    function.reset()
    body, headers = codec.encode_request(np.zeros((1, 64), dtype=np.float32), "json")

    def call(_: int) -> tuple[int, dict[str, str]]:
        client = HttpClient(function.host, function.port or 0, timeout_s=120)
        try:
            status, _, reply = client.request_full("POST", "/predict", body, headers)
        finally:
            client.close()
        return status, reply

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(4)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 200, 429]
    cold = [reply for status, reply in results if status == 200
            and "x-deploybench-init-ms" in reply]
    assert len(cold) == 3
    stats = function.stats()
    assert stats["environments"] == 3
    assert stats["throttled"] == 1
    # Again, all warm now: no new environment.
    assert call(0)[0] == 200
    assert "x-deploybench-init-ms" not in call(0)[1]
    assert function.stats()["environments"] == 3


def test_locust_through_the_front_door_has_no_errors(function: LambdaTarget, cpus: CpuPlan,  # type: ignore[no-untyped-def]
                                                     digits, tmp_path: Path) -> None:
    function.reset()
    [raw] = drive("lambda", function.load_spec(digits.example_requests()), list(cpus.loadgen),
                  tmp_path, one_window(concurrency=(2,))).stages
    stage = summarize_stage(raw)
    assert stage["requests"] >= 300
    assert stage["errors"] == 0, stage["error_kinds"]
    assert stage["warmup_complete"]
    assert raw.cold_flags().sum() == 2  # the two cold starts, seen by the load generator...
    assert stage["cold_requests"] == 0  # ...in the warm-up, not in the window
    platform = summarize_invocations(function.platform_records(), raw.window_start,
                                     raw.window_end, DEFAULT_PRICES)
    # Sent (client clock) vs received (emulator): at each edge of the window a request in
    # flight may fall on either side, at most one per user.
    assert abs(platform["invocations"] - stage["requests"]) <= 2
    assert platform["cold"] == 0
    assert platform["billed_gb_s"] > 0
    assert platform["cost_per_million_usd"]["arm64"] < platform["cost_per_million_usd"]["x86_64"]


def test_cold_start_is_measured(function: LambdaTarget, digits) -> None:  # type: ignore[no-untyped-def]
    result = function.cold_start(digits.example_requests()[0])
    assert result["init_ms"] > 50  # a new process importing torch and loading the model
    assert result["total_s"] * 1000 >= result["init_ms"]


def test_stop_leaves_no_environment(cpus: CpuPlan, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = LambdaTarget("digits", list(cpus.target), "json", concurrency=2)
    with target:
        target.predict(np.zeros((1, 64), dtype=np.float32))
        assert target._server is not None
        pids = [p.pid for p in target._server.tree()]
        assert len(pids) == 2  # the emulator and one environment
        [env_pid] = target.stats()["pids"]
        assert env_pid in pids
        env = psutil.Process(env_pid)
        assert "awslambdaric" in env.cmdline()
        assert env.environ()["OMP_NUM_THREADS"] == "1"
        # The emulator and the environment it started run pinned to the target CPUs.
        for pid in pids:
            assert sorted(os.sched_getaffinity(pid)) == sorted(cpus.target), pid
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids)


# -- failures through the Invoke API, as an application sees them ------------------------

#: A bundle module whose load() fails: the handler module's import (Lambda's Init) raises.
BROKEN_BUNDLE = """
from targets.bundles.null import NullBundle


class WeightsMissing(Exception):
    pass


class Bundle(NullBundle):
    name = "broken"

    def load(self):
        raise WeightsMissing("model.pt is not in the deployment package")
"""

#: A bundle module that takes 5 s to predict: past any function timeout these tests set.
SLOW_BUNDLE = """
import time

from targets.bundles.null import NullBundle


class Bundle(NullBundle):
    name = "slow"

    def predict(self, inputs):
        time.sleep(5.0)
        return inputs
"""

NULL_EVENT = json.dumps({"inputs": [[0.0] * 64]})


def _unhandled(client: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """A synchronous invoke that fails as Lambda reports a function error: status 200,
    ``FunctionError``/``X-Amz-Function-Error: Unhandled``. Returns the answer, its HTTP
    headers and the error payload."""
    answer = client.invoke(FunctionName="deploybench", Payload=NULL_EVENT, LogType="Tail")
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-function-error"] == "Unhandled"
    return answer, headers, json.loads(answer["Payload"].read())


def test_init_failure_through_the_invoke_api(cpus: CpuPlan, tmp_path: Path) -> None:
    bundle = tmp_path / "broken.py"
    bundle.write_text(BROKEN_BUNDLE)
    with LambdaTarget(str(bundle), list(cpus.target), "json", concurrency=1) as target:
        client = boto3_client(target.url)
        for _ in range(2):  # each invocation tries a new environment, and fails again
            answer, _headers, error = _unhandled(client)
            # What awslambdaric posted to /runtime/init/error: the exception's class.
            assert error["errorType"] == "WeightsMissing"
            assert error["errorMessage"] == "model.pt is not in the deployment package"
            assert isinstance(error["stackTrace"], list)
            report = report_of(answer)
            assert number(report["Init Duration"], "ms") > 0  # Init ran, and is billed
            # The peak RSS of the runtime that failed (read before it exited), not 0.
            assert number(report["Max Memory Used"], "MB") > 10
            assert number(report["Billed Duration"], "ms") >= \
                number(report["Init Duration"], "ms") - 0.01
            assert target.stats()["environments"] == 0  # the failed environment is gone
        # Through the Function URL the same failure is a 502.
        status, body, _ = target.request_with_headers(*codec.encode_request(
            np.zeros((1, 64), dtype=np.float32), "json"))
        assert (status, json.loads(body)) == (502, {"message": "Internal Server Error"})


def test_timeout_through_the_invoke_api(cpus: CpuPlan, tmp_path: Path) -> None:
    bundle = tmp_path / "slow.py"
    bundle.write_text(SLOW_BUNDLE)
    with LambdaTarget(str(bundle), list(cpus.target), "json", concurrency=1,
                      timeout_s=0.5) as target:
        client = boto3_client(target.url)
        for _ in range(2):  # the timed-out environment is killed: the next one is cold
            answer, headers, error = _unhandled(client)
            request_id = headers["x-amzn-requestid"]
            assert error == {"errorType": "Sandbox.Timedout",
                             "errorMessage": f"RequestId: {request_id} Error: Task timed "
                                             "out after 0.50 seconds"}
            report = report_of(answer)
            assert 500 <= number(report["Duration"], "ms") < 3000  # killed, not waited out
            assert "Init Duration" in report
            assert target.stats()["environments"] == 0


# -- the execution model, driven directly (real awslambdaric, no HTTP front door) -------

def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _function(tmp_path: Path, keepalive: float = 600.0, **config: Any) -> LambdaFunction:
    options = {"name": "t", "memory_mb": 512, "timeout_s": 30.0, "init_timeout_s": 10.0,
               **config}
    return LambdaFunction(FunctionConfig(**options), concurrency=2, keepalive_s=keepalive,
                          records_path=tmp_path / "r.jsonl", log=lambda line: None)


def test_init_failure_is_reported_as_lambda_does(tmp_path: Path) -> None:
    async def scenario() -> Any:
        fn = _function(tmp_path, extra_env={"DEPLOYBENCH_BUNDLE": "no-such-bundle"})
        fn.start()
        try:
            return await fn.invoke(GOOD, "invoke")
        finally:
            await fn.close()

    invocation = _run(scenario())
    assert invocation.outcome.kind == "init_error"
    error = json.loads(invocation.outcome.body)
    assert error["errorType"] == "BundleError"
    assert "no-such-bundle" in error["errorMessage"]
    assert invocation.cold
    assert invocation.outcome.init_ms > 0  # Init ran (and failed): it is billed
    assert invocation.billed_ms >= invocation.outcome.init_ms


def test_timeout_kills_the_environment(tmp_path: Path) -> None:
    async def scenario() -> Any:
        fn = _function(tmp_path, timeout_s=0.005,
                       extra_env={"DEPLOYBENCH_BUNDLE": "vision"})
        fn.start()
        try:
            payload = json.dumps({"data": base64.b64encode(
                np.zeros((1, 3, 224, 224), dtype="<f4").tobytes()).decode(),
                "shape": [1, 3, 224, 224]}).encode()
            first = await fn.invoke(payload, "invoke")
            return first, len(fn.envs)
        finally:
            await fn.close()

    invocation, envs_left = _run(scenario())
    assert invocation.outcome.kind == "timeout"
    error = json.loads(invocation.outcome.body)
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.01 seconds" in error["errorMessage"]
    assert envs_left == 0  # the timed-out environment is gone


def test_idle_environments_are_reaped(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        fn = _function(tmp_path, keepalive=0.5)
        fn.start()
        try:
            await fn.invoke(GOOD, "invoke")
            alive = len(fn.envs)
            await asyncio.sleep(2.5)  # keep-alive 0.5 s, reaper every 1 s
            return alive, len(fn.envs)
        finally:
            await fn.close()

    assert _run(scenario()) == (1, 0)


def test_over_the_limit_is_throttled_not_queued(tmp_path: Path) -> None:
    async def scenario() -> list[Any]:
        fn = _function(tmp_path)  # concurrency 2
        fn.start()
        try:
            return await asyncio.gather(*(fn.invoke(GOOD, "invoke") for _ in range(3)),
                                        return_exceptions=True)
        finally:
            await fn.close()

    results = _run(scenario())
    assert sum(isinstance(r, Throttled) for r in results) == 1
    assert sum(getattr(r, "cold", False) for r in results) == 2


VISION_PAYLOAD = json.dumps({"data": base64.b64encode(
    np.zeros((1, 3, 224, 224), dtype="<f4").tobytes()).decode(),
    "shape": [1, 3, 224, 224]}).encode()


async def _while_busy(fn: LambdaFunction, act: Any) -> Any:
    """Start a vision invocation (~50 ms), act on it once it is delivered, return it."""
    task = asyncio.create_task(fn.invoke(VISION_PAYLOAD, "invoke"))
    while not any(env._current is not None and env._current.delivered_at
                  for env in fn.envs.values()):
        await asyncio.sleep(0.001)
    act()
    return await asyncio.wait_for(task, 30)


def test_a_crash_mid_invocation_is_reported_not_hung(tmp_path: Path) -> None:
    async def scenario() -> Any:
        fn = _function(tmp_path, extra_env={"DEPLOYBENCH_BUNDLE": "vision"})
        fn.start()
        try:
            await fn.invoke(VISION_PAYLOAD, "invoke")  # warm it up
            [env] = fn.envs.values()
            assert env.pid is not None
            invocation = await _while_busy(fn, lambda: os.kill(env.pid, signal.SIGKILL))
            return invocation, len(fn.envs), fn.in_flight
        finally:
            await fn.close()

    invocation, envs, in_flight = _run(scenario())
    assert invocation.outcome.kind == "crash"
    error = json.loads(invocation.outcome.body)
    assert error["errorType"] == "Runtime.ExitError"
    # As Lambda words it (Go's signal names): "Runtime exited with error: signal: killed".
    assert error["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert (envs, in_flight) == (0, 0)


def test_reset_mid_invocation_answers_it(tmp_path: Path) -> None:
    async def scenario() -> Any:
        fn = _function(tmp_path, extra_env={"DEPLOYBENCH_BUNDLE": "vision"})
        fn.start()
        try:
            await fn.invoke(VISION_PAYLOAD, "invoke")
            return await _while_busy(fn, fn.reset), fn.in_flight
        finally:
            await fn.close()

    invocation, in_flight = _run(scenario())
    assert invocation.outcome.kind == "crash"
    assert in_flight == 0


def test_a_failing_event_is_retried_twice(tmp_path: Path, digits) -> None:  # type: ignore[no-untyped-def]
    # ``digits``: the model is trained before, not inside the first attempt's Init.
    async def scenario() -> list[dict[str, Any]]:
        fn = _function(tmp_path)
        fn.start()
        try:
            fn.enqueue(json.dumps({"inputs": [[1.0]]}).encode())  # a function error
            # Retries after 1 s and 2 s more, behind a cold start of seconds on a slow
            # machine: wait for the third record, then longer than a retry's delay, so
            # a fourth attempt would be seen.
            records = tmp_path / "r.jsonl"
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline and (
                    not records.exists() or len(records.read_text().splitlines()) < 3):
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(EVENT_RETRY_DELAYS_S) + 1.0)
        finally:
            await fn.close()
        return [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]

    records = _run(scenario())
    assert [(r["source"], r["outcome"]) for r in records] == [("event", "function_error")] * 3
