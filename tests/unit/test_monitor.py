"""targets.monitor and targets.monitorapp: one serving process's metrics and prediction
log, and the layer that counts an HTTP app's /predict answers (#22)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from targets.batcher import Batcher
from targets.batching import BatchingSpec
from targets.bundles.null import NullBundle
from targets.bundles.protocol import Prediction
from targets.entrypoint import exit_if_unwritable
from targets.errors import RequestError
from targets.grpc.metrics import MetricsServer
from targets.grpc.server import main as grpc_main
from targets.monitor import (
    MULTIPROC_ENV,
    Monitor,
    exit_if_monitoring,
    multiprocess_dir,
    outcome_of_status,
    predictor,
    worker_monitor,
)
from targets.monitorapp import MetricsASGI, MetricsWSGI
from targets.monitoring import OFF, Monitoring, parse_scrape
from targets.nullhttp.server import main as nullhttp_main
from targets.predlog import count_rows, read_log
from targets.rayserve.server import main as rayserve_main

ON = Monitoring(metrics=True, log_rate=1.0)


class _Failing(NullBundle):
    """The null bundle, failing on a row starting with -1 (the client's: 400) or -2 (a
    bug: 500)."""

    def postprocess(self, outputs: Any) -> list[Prediction]:
        first = float(np.asarray(outputs)[0, 0])
        if first == -1:
            raise RequestError(400, "bad row")
        if first == -2:
            raise RuntimeError("a bug")
        return super().postprocess(outputs)


def _monitor(tmp_path: Path, monitoring: Monitoring = ON) -> Monitor:
    return Monitor(monitoring, _Failing(), tmp_path / "log", registry=CollectorRegistry())


def _row(first: float) -> np.ndarray:
    row = np.zeros((1, 64), dtype=np.float32)
    row[0, 0] = first
    return row


def _scrape(monitor: Monitor) -> Any:
    body, content_type = monitor.exposition()
    assert content_type.startswith("text/plain")
    return parse_scrape(body.decode(), time.time())


def test_handle_counts_outcomes_times_and_logs(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    answers = [monitor.handle(monitor.bundle, _row(k)) for k in range(5)]
    for first in (-1, -1, -2):
        with pytest.raises((RequestError, RuntimeError)):
            monitor.handle(monitor.bundle, _row(first))
    scrape = _scrape(monitor)
    assert scrape.requests == 8
    assert scrape.errors == 3
    assert scrape.latency_count == 8
    body = monitor.exposition()[0].decode()
    assert 'deploybench_requests_total{outcome="client_error"} 2.0' in body
    assert 'deploybench_requests_total{outcome="server_error"} 1.0' in body
    assert "deploybench_model_seconds_count 8.0" in body  # every forward pass, failed too
    assert "deploybench_batch_examples_sum 8.0" in body
    assert 'deploybench_model_info{bundle="null",version="null"} 1.0' in body
    monitor.close()
    rows = list(read_log(tmp_path / "log"))
    assert len(rows) == 5  # only the answered requests are logged
    for k, (row, answer) in enumerate(zip(rows, answers, strict=True)):
        assert row.input[0, 0] == k
        assert row.output == [(p.label, p.probabilities) for p in answer]
        assert row.model_version == "null"


def test_log_rate_and_log_only(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, Monitoring(log_rate=0.25))
    assert monitor.metrics is None
    for k in range(8):
        monitor.serve(_row(k))
    monitor.close()
    assert count_rows(tmp_path / "log") == 2


def test_metrics_only_writes_no_log(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, Monitoring(metrics=True))
    monitor.serve(_row(1))
    monitor.close()
    assert monitor.log is None
    assert not (tmp_path / "log").exists()


def test_off_is_no_monitor_and_the_plain_call(tmp_path: Path) -> None:
    bundle = NullBundle()
    assert worker_monitor(OFF, bundle, None) is None
    infer = predictor(bundle)
    assert infer(_row(0))[0].label == 0


def test_multiprocess_metrics_need_their_folder(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(RuntimeError, match=MULTIPROC_ENV):
        Monitor(Monitoring(metrics=True), NullBundle())
    # prometheus_client is imported in this process: too late to pick multiprocess mode.
    with pytest.raises(RuntimeError, match="imported before"):
        multiprocess_dir(Monitoring(metrics=True))
    assert multiprocess_dir(Monitoring(log_rate=1.0)) is None


def test_batcher_observes_forward_passes_and_requests_are_logged_alone(tmp_path: Path
                                                                       ) -> None:
    monitor = _monitor(tmp_path)
    batcher = Batcher(monitor.bundle, BatchingSpec(max_batch=8, max_wait_ms=50), None, monitor)
    infer = monitor.predictor(batcher)
    try:
        batch = np.concatenate([_row(1), _row(2)])
        assert len(infer(batch)) == 2
        assert len(infer(_row(3))) == 1
    finally:
        batcher.close()
    body = monitor.exposition()[0].decode()
    assert "deploybench_batch_examples_sum 3.0" in body
    monitor.close()
    rows = list(read_log(tmp_path / "log"))
    assert [row.input.shape[0] for row in rows] == [2, 1]


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    status = {"/predict": environ.get("HTTP_X_STATUS", "200 OK")}.get(environ["PATH_INFO"],
                                                                      "200 OK")
    if status == "crash":
        raise RuntimeError("a bug")
    start_response(status, [("Content-Type", "application/json")])
    return [b"{}"]


def test_wsgi_layer_counts_predict_answers_and_serves_metrics(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, Monitoring(metrics=True))
    app = MetricsWSGI(_wsgi_app, monitor)
    started: list[str] = []

    def start(status: str, headers: Any, exc_info: Any = None) -> None:
        started.append(status)

    for status in ("200 OK", "200 OK", "400 Bad Request", "405 Method Not Allowed",
                   "500 Internal Server Error"):
        app({"PATH_INFO": "/predict", "HTTP_X_STATUS": status}, start)
    with pytest.raises(RuntimeError):
        app({"PATH_INFO": "/predict", "HTTP_X_STATUS": "crash"}, start)
    app({"PATH_INFO": "/healthz"}, start)  # not counted
    body = b"".join(app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}, start))
    assert started[-1] == "200 OK"
    scrape = parse_scrape(body.decode(), time.time())
    assert scrape.requests == 6
    assert scrape.errors == 4
    assert outcome_of_status(302) == "ok"


def test_asgi_layer_counts_predict_answers_and_serves_metrics(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, Monitoring(metrics=True))

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status = int(dict(scope["headers"]).get(b"x-status", b"200"))
        if status == 599:
            raise RuntimeError("a bug, unanswered")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = MetricsASGI(inner, monitor)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def drive() -> None:
        await app({"type": "lifespan"}, receive, send)
        for status in (b"200", b"200", b"200", b"413", b"500"):
            await app({"type": "http", "path": "/predict", "method": "POST",
                       "headers": [(b"x-status", status)]}, receive, send)
        with pytest.raises(RuntimeError):
            await app({"type": "http", "path": "/predict", "method": "POST",
                       "headers": [(b"x-status", b"599")]}, receive, send)
        await app({"type": "http", "path": "/healthz", "method": "GET", "headers": []},
                  receive, send)
        sent.clear()
        await app({"type": "http", "path": "/metrics", "method": "GET", "headers": []},
                  receive, send)

    asyncio.run(drive())
    assert sent[0]["status"] == 200
    scrape = parse_scrape(sent[1]["body"].decode(), time.time())
    assert scrape.requests == 6
    assert scrape.errors == 3


class _Args:
    def __init__(self, metrics: bool = False, log_predictions: float = 0.0) -> None:
        self.metrics, self.log_predictions = metrics, log_predictions


def test_servers_that_cannot_monitor_refuse_the_flags(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    exit_if_monitoring(_Args(), "never")  # neither flag: nothing to refuse
    with pytest.raises(SystemExit) as stopped:
        exit_if_monitoring(_Args(metrics=True, log_predictions=0.5), "it cannot")
    assert stopped.value.code == 2
    assert "--metrics and --log-predictions: it cannot" in capsys.readouterr().err
    for main in (nullhttp_main, rayserve_main):
        with pytest.raises(SystemExit) as stopped:
            main(["--metrics", "--port", "0"])
        assert stopped.value.code == 2


@pytest.mark.parametrize(("folder", "says"), [
    (None, "--log-predictions needs --prediction-log-dir DIR"),
    ("a-file/log", "cannot write the prediction log"),  # under a file: none can be made
])
def test_a_prediction_log_folder_no_worker_can_write_is_refused_at_once(
        tmp_path: Path, folder: str | None, says: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as stopped:
        exit_if_unwritable(None if folder is None else str(tmp_path / folder))
    assert stopped.value.code == 2
    assert says in capsys.readouterr().err
    exit_if_unwritable(str(tmp_path / "new" / "log"))  # a missing folder is made
    assert (tmp_path / "new" / "log").is_dir()


def test_grpc_metrics_need_a_side_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert grpc_main(["--metrics", "--port", "0"]) == 2
    assert "--metrics-port" in capsys.readouterr().err


def test_grpc_side_port_serves_the_multiprocess_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    server = MetricsServer("127.0.0.1", 0)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                    timeout=5) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/plain")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/other", timeout=5)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):  # the port is gone with it
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
