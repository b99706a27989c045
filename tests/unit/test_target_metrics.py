"""The load generator's scrapes of a target's metrics (a prometheus_client HTTP server on
127.0.0.1 stands in for the target), what a stage's record keeps of them, and the
cross-check's arithmetic on made-up scrape pairs."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from harness.loadgen.analysis.targetmetrics import compare, cross_check
from harness.loadgen.protocol import RawStage, StageReport
from harness.loadgen.scrape import StageScraper, fetch, scrape
from targets.monitor import _registered
from targets.monitoring import INPROCESS_URL, LATENCY_BUCKETS_S, Scrape, parse_scrape


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, Any, Any]]:
    """A registry with deploybench's request metrics, served on 127.0.0.1."""
    registry = CollectorRegistry()
    requests = Counter("deploybench_requests", "requests", ["outcome"], registry=registry)
    seconds = Histogram("deploybench_request_seconds", "time", registry=registry,
                        buckets=LATENCY_BUCKETS_S)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics", requests, seconds
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_scrape_reads_the_targets_counts_and_histogram(
        metrics_server: tuple[str, Any, Any]) -> None:
    url, requests, seconds = metrics_server
    before = scrape(url)
    for outcome, latency in (("ok", 0.001), ("ok", 0.003), ("server_error", 0.002)):
        requests.labels(outcome=outcome).inc()
        seconds.observe(latency)
    after = scrape(url).since(before)
    assert (after.requests, after.errors, after.latency_count) == (3, 1, 3)
    assert after.mean_latency_s == pytest.approx(0.002)
    assert after.quantile_s(0.99) is not None


class Killed(Exception):
    """A helper told to stop, at its next sleep (as gevent's kill ends a greenlet)."""


class ThreadEngine:
    """The stage loop's engine as far as the scraper uses it: threads, killable sleeps."""

    def __init__(self) -> None:
        self.killed = threading.Event()

    def sleep(self, seconds: float) -> None:
        if self.killed.wait(seconds):
            raise Killed

    def spawn(self, fn: Callable[[], None]) -> Any:
        def run() -> None:
            with contextlib.suppress(Killed):
                fn()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        engine = self

        class Task:
            def kill(self) -> None:
                engine.killed.set()
                thread.join(timeout=5)
        return Task()


def test_a_stage_is_scraped_at_its_edges_and_every_interval(
        metrics_server: tuple[str, Any, Any]) -> None:
    url, requests, _ = metrics_server
    scraper = StageScraper(ThreadEngine(), url, interval_s=0.05)  # type: ignore[arg-type]
    scraper.before()
    scraper.start()
    requests.labels(outcome="ok").inc(7)
    time.sleep(0.3)
    scraper.after()
    report = scraper.report()
    assert report["error"] is None
    assert report["scrapes"] >= 4  # two edges and a few periodic ones
    before, after = Scrape.from_json(report["before"]), Scrape.from_json(report["after"])
    assert after.since(before).requests == 7
    assert StageReport.from_json(StageReport(
        concurrency=1, window_start=0.0, window_end=1.0, truncated=0, unanswered=0,
        target_cpu_percent=None, target_cpu_s=None, loadgen_cpu_percent=None,
        loadgen_cpu_s=0.0, target_rss_mb=None, target_pss_mb=None,
        target_metrics=report).to_json()).target_metrics == report


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NotMetrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# HELP up whether\n# TYPE up gauge\nup 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_failed_scrape_is_recorded_never_raised() -> None:
    scraper = StageScraper(ThreadEngine(), f"http://127.0.0.1:{closed_port()}/metrics",  # type: ignore[arg-type]
                           interval_s=0, timeout_s=1.0)
    scraper.before()
    scraper.after()
    report = scraper.report()
    assert (report["before"], report["after"], report["scrapes"]) == (None, None, 0)
    assert report["failed"] == 2
    assert "the stage's first scrape of http://127.0.0.1:" in report["error"]
    assert "URLError" in report["error"]


def test_a_page_without_our_metrics_is_an_error() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with pytest.raises(ValueError, match="neither deploybench's metrics"):
            scrape(url)
        scraper = StageScraper(ThreadEngine(), url, interval_s=0)  # type: ignore[arg-type]
        scraper.before()
        assert "ValueError: the scrape holds neither" in (scraper.report()["error"] or "")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def not_http() -> Iterator[str]:
    """A TCP port that answers every connection with bytes that are not HTTP (a gRPC
    port scraped by mistake answers HTTP/2 frames)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def answer() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"\x00\x00\x12\x04garbage, not HTTP\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/metrics"
    finally:
        listener.close()
        thread.join(timeout=5)


def test_an_answer_that_is_not_http_is_a_failed_scrape_not_a_failed_stage() -> None:
    with not_http() as url:
        scraper = StageScraper(ThreadEngine(), url, interval_s=0, timeout_s=2.0)  # type: ignore[arg-type]
        scraper.before()
        scraper.after()
    report = scraper.report()
    assert (report["before"], report["after"], report["failed"]) == (None, None, 2)
    assert "BadStatusLine" in (report["error"] or "")


@pytest.mark.parametrize(("text", "says"), [
    ("deploybench_requests_total{outcome=\"ok\" 3\n", "could not convert"),  # unclosed {
    ("deploybench_requests_total{outcome=\"ok\"} 3\n"
     "# TYPE deploybench_request_seconds histogram\n"
     "deploybench_request_seconds_bucket 3\n", "not Prometheus's text format \\(KeyError"),
    ("\x00\x01 binary\n", "invalid metric name"),
])
def test_a_scrape_that_is_not_the_text_format_is_a_value_error(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_scrape(text, 0.0)


def test_the_inprocess_url_reads_this_processs_default_registry() -> None:
    # The in-process application's metrics, made once per registry and kept for the
    # process's life (an earlier in-process run in this pytest may have counted already):
    # the scrape must see exactly the 5 added here.
    metrics = _registered(REGISTRY)
    before = scrape(INPROCESS_URL).requests
    metrics.by_outcome["ok"].inc(5)
    assert "deploybench_requests_total" in fetch(INPROCESS_URL)
    assert scrape(INPROCESS_URL).requests == before + 5
    odd = StageScraper(ThreadEngine(), "ftp://x/metrics", 0.0)  # type: ignore[arg-type]
    odd.before()
    odd.after()
    assert odd.report()["scrapes"] == 0
    assert "is neither http(s)://" in (odd.report()["error"] or "")


# -- the cross-check ----------------------------------------------------------------------
def scrape_pair(requests: float, errors: float, sum_s: float,
                buckets: tuple[tuple[float, float], ...]) -> tuple[Scrape, Scrape]:
    before = Scrape(at=0.0, requests=10, errors=1, latency_sum_s=0.5, latency_count=10,
                    buckets=((0.001, 4), (0.01, 10), (float("inf"), 10)))
    after = Scrape(at=1.0, requests=10 + requests, errors=1 + errors,
                   latency_sum_s=0.5 + sum_s, latency_count=10 + requests,
                   buckets=tuple((le, dict(before.buckets)[le] + n) for le, n in buckets))
    return before, after


def test_equal_counts_and_a_faster_server_agree() -> None:
    # 100 requests, 2 failed; the server's 100 took 0.1 s in all (1 ms each), the
    # client saw 1.5 ms each: 0.5 ms outside the handler.
    before, after = scrape_pair(100, 2, 0.1, ((0.001, 50), (0.01, 100), (float("inf"), 100)))
    ok = np.ones(100, dtype=bool)
    ok[:2] = False
    check = compare(before, after, np.full(100, 1.5), ok, scrapes=4)
    assert check["agrees"]
    assert check["why"] is None
    assert (check["target_requests"], check["loadgen_requests"]) == (100, 100)
    assert check["count_diff_percent"] == 0.0
    assert (check["target_errors"], check["loadgen_errors"]) == (2, 2)
    assert check["target_mean_ms"] == pytest.approx(1.0)
    assert check["loadgen_mean_ms"] == pytest.approx(1.5)
    # 99th of 100 in the (1 ms, 10 ms] bucket, holding ranks 51..100: 1 + 9 * 49/50 ms.
    assert check["target_p99_ms"] == pytest.approx(1.0 + 9.0 * 49 / 50)
    assert check["loadgen_p99_ms"] == pytest.approx(1.5)
    assert check["scrapes"] == 4


def test_a_count_off_by_more_than_2_percent_disagrees() -> None:
    before, after = scrape_pair(97, 0, 0.097, ((0.001, 97), (0.01, 97), (float("inf"), 97)))
    check = compare(before, after, np.full(100, 1.5), np.ones(100, dtype=bool), scrapes=2)
    assert not check["agrees"]
    assert check["count_diff_percent"] == pytest.approx(-3.0)
    assert "counted 97 requests, the load generator sent 100 (-3.0%)" in (check["why"] or "")
    within = compare(*scrape_pair(98, 0, 0.098, ((float("inf"), 98),)), np.full(100, 1.5),
                     np.ones(100, dtype=bool), scrapes=2)
    assert within["agrees"]


def test_a_server_slower_than_its_client_disagrees() -> None:
    before, after = scrape_pair(100, 0, 0.2, ((float("inf"), 100),))  # 2 ms each
    check = compare(before, after, np.full(100, 1.5), np.ones(100, dtype=bool), scrapes=2)
    assert not check["agrees"]
    assert "exceeds the load generator's mean latency" in (check["why"] or "")


def test_fast_failures_only_the_client_timed_do_not_make_the_server_slower() -> None:
    # Lambda: 100 requests, 30 throttled in 1 ms (the target counts them, but they have
    # no Duration); 70 invocations of 5 ms each, 6 ms round trip. The client's mean
    # (4.5 ms) is below the target's (5 ms), yet every invocation fits in its round trip.
    before = Scrape(at=0.0, requests=0, errors=0, latency_sum_s=0.0, latency_count=0)
    after = Scrape(at=1.0, requests=100, errors=30, latency_sum_s=0.35, latency_count=70,
                   buckets=((0.005, 70), (float("inf"), 70)))
    latency = np.concatenate([np.full(70, 6.0), np.full(30, 1.0)])
    ok = np.concatenate([np.ones(70, dtype=bool), np.zeros(30, dtype=bool)])
    check = compare(before, after, latency, ok, scrapes=2)
    assert check["target_mean_ms"] == pytest.approx(5.0)
    assert check["loadgen_mean_ms"] == pytest.approx(4.5)
    assert check["agrees"], check["why"]
    # The same requests at 4 ms round trip: 350 ms in the target, 310 in the client.
    slower = compare(before, after, np.concatenate([np.full(70, 4.0), np.full(30, 1.0)]),
                     ok, scrapes=2)
    assert not slower["agrees"]
    assert "time in all (350.0 ms) the client's 100 round trips' (310.0 ms)" in \
        (slower["why"] or "")


def raw_stage(target_metrics: dict[str, Any] | None, n: int = 10,
              unanswered: int = 0) -> RawStage:
    return RawStage(concurrency=1, window_start=0.0, window_end=1.0, truncated=0,
                    unanswered=unanswered, target_cpu_percent=None, target_cpu_s=None,
                    loadgen_cpu_percent=None, loadgen_cpu_s=0.0, target_rss_mb=None,
                    target_pss_mb=None, target_metrics=target_metrics,
                    start_s=np.zeros(n), latency_ms=np.full(n, 2.0),
                    ok=np.ones(n, dtype=bool))


def test_the_stage_cross_check_reads_its_record() -> None:
    assert cross_check(raw_stage(None)) is None
    before, after = scrape_pair(9, 0, 0.009, ((float("inf"), 9),))
    check = cross_check(raw_stage({"before": before.to_json(), "after": after.to_json(),
                                   "scrapes": 3, "error": None}, unanswered=1))
    assert check is not None
    assert not check["agrees"]
    assert "given up on at the drain timeout" in (check["why"] or "")
    failed = cross_check(raw_stage({"before": None, "after": after.to_json(), "scrapes": 1,
                                    "error": "the stage's first scrape failed: boom"}))
    assert failed is not None
    assert failed["target_requests"] is None
    assert not failed["agrees"]
    assert failed["why"] == "the stage's first scrape failed: boom"
    assert failed["loadgen_requests"] == 10
