"""Scraping the target's own metrics during a stage (``run --metrics``), as Prometheus
would: once just before the stage's users start, every ``scrape_interval_s`` while it
runs (that load is part of what metrics cost the target), and once right after its
drain. The two edge scrapes bracket every request of the stage, warm-up to drain, so the
target's count between them is the load generator's count of the stage's samples
(the cross-check: :mod:`harness.loadgen.analysis.targetmetrics`).

A served target is read with an HTTP GET (urllib: in the Locust driver gevent has
patched its sockets, so a scrape waits without holding up the users); the in-process
target's metrics live in this very process, read with prometheus_client's
``generate_latest()`` of the default registry. A failed scrape is recorded, never
raised: it must not fail the stage it observes.
"""

from __future__ import annotations

import http.client
import time
import urllib.request
from typing import Any

from harness.loadgen.stagekit import Engine, Task
from targets.monitoring import INPROCESS_URL, Scrape, parse_scrape

#: How long one scrape may take (Prometheus's own default scrape_timeout is 10 s; a
#: target on this machine answers in milliseconds, so 5 s means it is stuck).
SCRAPE_TIMEOUT_S = 5.0


def fetch(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> str:
    """The metrics at ``url`` in Prometheus's text format (INPROCESS_URL: this
    process's default registry). Raises OSError (urllib's errors among them),
    http.client.HTTPException (an answer that is not HTTP: a gRPC port, say) or
    ValueError."""
    if url == INPROCESS_URL:
        # Here, not at the top: prometheus_client picks its multiprocess mode at import.
        from prometheus_client import generate_latest

        return generate_latest().decode()
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        body: bytes = answer.read()
    return body.decode()


def scrape(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> Scrape:
    """One scrape, read into the cross-check's figures (ValueError: not our metrics)."""
    text = fetch(url, timeout_s)
    return parse_scrape(text, time.time())


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class StageScraper:
    """The scrapes of one stage: :meth:`before`, then :meth:`start` (every interval),
    then :meth:`after`; :meth:`report` is what the stage's record keeps."""

    def __init__(self, engine: Engine, url: str, interval_s: float,
                 timeout_s: float = SCRAPE_TIMEOUT_S) -> None:
        self.engine, self.url = engine, url
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self.first: Scrape | None = None
        self.last: Scrape | None = None
        self.scrapes = 0
        #: The first scrape that failed, and how many failed.
        self.error: str | None = None
        self.failed = 0
        self._task: Task | None = None
        #: A URL no scrape can read is said once, not tried (nor raised: see the module).
        self._unreadable = not url.startswith(("http://", "https://")) \
            and url != INPROCESS_URL
        if self._unreadable:
            self.error = f"metrics_url {url!r} is neither http(s):// nor {INPROCESS_URL!r}"

    def _one(self, edge: str) -> Scrape | None:
        if self._unreadable:
            return None
        try:
            found = scrape(self.url, self.timeout_s)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.failed += 1
            if self.error is None:
                self.error = f"{edge} scrape of {self.url} failed: {_why(exc)}"
            return None
        self.scrapes += 1
        return found

    def before(self) -> None:
        """Just before the stage's users start."""
        self.first = self._one("the stage's first")

    def start(self) -> None:
        """Every ``interval_s`` until :meth:`after`, cooperatively (the engine's task)."""
        if self.interval_s > 0:
            self._task = self.engine.spawn(self._every_interval)

    def _every_interval(self) -> None:
        while True:
            self.engine.sleep(self.interval_s)
            self._one("a periodic")

    def stop(self) -> None:
        """The periodic scrapes end (idempotent; also on a stage that failed)."""
        if self._task is not None:
            self._task.kill()
            self._task = None

    def after(self) -> None:
        """Right after the stage's drain: nothing of the stage is in flight."""
        self.stop()
        self.last = self._one("the stage's last")

    def report(self) -> dict[str, Any]:
        """What the stage's record keeps (StageReport.target_metrics)."""
        return {"url": self.url,
                "before": None if self.first is None else self.first.to_json(),
                "after": None if self.last is None else self.last.to_json(),
                "scrapes": self.scrapes, "failed": self.failed, "error": self.error,
                "interval_s": self.interval_s}
