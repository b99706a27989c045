"""Real Locust load, in its own process, against real targets."""

from __future__ import annotations

import http.server
import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cpus import CpuPlan
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.launch import LoadResult
from scenarios.catalogue import Scenario
from targets.flask.target import FlaskTarget
from targets.wire.codec import AnswerShape
from tests.integration.stages import drive

pytestmark = pytest.mark.integration

STAGE = Scenario(name="it", description="", concurrency=(4,), warmup_s=0.5,
                 stability_windows=1, max_windows=1, window_s=2.0, cooldown_s=0.2,
                 drain_timeout_s=10.0, sha256="0" * 64, path="it.yaml")


def run_load(target: str, spec: Any, cpus: CpuPlan, tmp_path: Path,
             scenario: Scenario = STAGE, reference: Any = None,
             events: list[dict[str, Any]] | None = None,
             answers: list[AnswerShape] | None = None) -> LoadResult:
    return drive(target, spec, list(cpus.loadgen), tmp_path, scenario, reference, events,
                 answers=answers)


def _check_stage(result: LoadResult) -> None:
    assert result.error is None
    [raw] = result.stages
    stage = summarize_stage(raw)
    assert stage["requests"] >= 300, stage["requests"]
    assert stage["rps"] > 0
    assert stage["errors"] == 0, stage["error_kinds"]
    assert stage["truncated"] == 0
    lat = stage["latency_ms"]
    assert lat is not None
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    # CPU shares are of the CPUs each side was given: positive, and at most all of them.
    for key in ("loadgen_cpu_percent", "target_cpu_percent"):
        assert 0 < (stage[key] or 0) <= 105, (key, stage[key])  # type: ignore[literal-required]
    assert stage["loadgen_cpu_ms_per_request"] is not None
    assert stage["loadgen_cpu_ms_per_request"] > 0
    assert stage["target_peak_rss_mb"] is not None
    assert stage["target_peak_rss_mb"] >= (stage["target_rss_mb"] or 0) * 0.99
    assert not stage["target_processes_changed"]
    # Locust's own count of successes in the window agrees with ours (answers vs sends).
    loc = stage["locust"]
    assert abs(loc["requests"] - loc["failures"] - stage["requests"]) <= 8


def test_flask_under_locust(cpus: CpuPlan, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    events: list[dict[str, Any]] = []
    examples = digits.example_requests()
    with FlaskTarget("digits", list(cpus.target), "json") as target:
        # Every answer decoded and checked: one prediction of digits' 10 classes a request.
        result = run_load("flask", target.load_spec(examples), cpus, tmp_path,
                          events=events, answers=[(1, 10)] * len(examples))
    _check_stage(result)
    phases = [e.get("phase") for e in events if e.get("event") == "stage"]
    assert phases == ["spawn", "warmup", "measure", "cooldown", "done"]
    assert not (tmp_path / "work").exists()  # raw files folded into the result


def test_dead_target_becomes_errors_not_a_crash(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                                tmp_path: Path) -> None:
    target = FlaskTarget("digits", list(cpus.target), "json")
    with target:
        spec = target.load_spec(digits.example_requests())
    # The server is gone before the load starts: every request fails, the run goes on.
    stage = summarize_stage(run_load("flask", spec, cpus, tmp_path).stages[0])
    assert stage["requests"] > 0
    assert stage["errors"] == stage["requests"]
    assert stage["rps"] == 0
    assert stage["error_kinds"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and reads requests, but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conns.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in conns:
        conn.close()
    listener.close()


def test_unanswered_requests_are_failures_not_lost(cpus: CpuPlan, silent_server: str,
                                                   tmp_path: Path) -> None:
    spec: Any = {"protocol": "http", "url": silent_server, "path": "/predict", "cpus": [],
                 "payloads": [{"body": b"{}", "headers": {"Content-Type": "application/json"}}]}
    scenario = Scenario(name="it", description="", concurrency=(3,), warmup_s=0.0,
                        stability_windows=1, max_windows=1,
                        window_s=0.5, cooldown_s=0.0, drain_timeout_s=1.0, sha256="",
                        path="", warmup_max_s=0.0)  # no waiting for answers that never come
    [raw] = run_load("silent", spec, cpus, tmp_path, scenario).stages
    # Each of the 3 users sent one request as it started, before the window, and never
    # got an answer: 3 failed samples that waited at least the drain, none in the window.
    assert len(raw.ok) == 3
    assert not raw.ok.any()
    assert (raw.latency_ms >= 1000 * scenario.drain_timeout_s).all()
    assert raw.error_kinds == {"no answer within the 1 s drain timeout": 3}
    stage = summarize_stage(raw)
    assert stage["requests"] == 0
    assert stage["truncated"] == 0
    assert stage["unanswered"] == 3  # reported, so the report can say users were stuck
    assert stage["rps"] == 0


#: 200 answers a client cannot use, in turn, and the problem the load user names for each.
WRONG_ANSWERS = [
    (b'{"predictions":[{"label":0,"probabilities":[0.5,0.5]},'
     b'{"label":1,"probabilities":[0.5,0.5]}]}', "2 predictions for a request of 1 row"),
    (b'{"predictions":[{"label":7,"probabilities":[0.5,0.5]}]}', "label 7 outside"),
    (b'{"predictions":[{"label":0,"probabilities":[1.0]}]}', "1 probabilities where 2"),
    (b'{"predictions":1}', "does not decode"),
]


@pytest.fixture
def wrong_server() -> Iterator[str]:
    """Answers every request 200, with the bodies of WRONG_ANSWERS in turn."""
    bodies = itertools.cycle([body for body, _ in WRONG_ANSWERS])

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = next(bodies)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_every_answer_is_decoded_and_a_wrong_one_is_a_failure(
        cpus: CpuPlan, wrong_server: str, tmp_path: Path) -> None:
    spec: Any = {"protocol": "http", "url": wrong_server, "path": "/predict", "cpus": [],
                 "payloads": [{"body": b"{}", "headers": {"Content-Type": "application/json"}}]}
    scenario = Scenario(name="it", description="", concurrency=(1,), warmup_s=0.2,
                        stability_windows=1, max_windows=1, window_s=1.0, cooldown_s=0.1,
                        drain_timeout_s=5.0, sha256="", path="", warmup_max_s=1.0)
    stage = summarize_stage(run_load("wrong", spec, cpus, tmp_path, scenario,
                                     answers=[(1, 2)]).stages[0])
    assert stage["requests"] > 20
    assert stage["errors"] == stage["requests"]  # a 200 is not a success by itself
    kinds = " | ".join(stage["error_kinds"])
    for _, problem in WRONG_ANSWERS:
        assert problem in kinds, kinds
