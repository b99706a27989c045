"""The emulator's metrics (``--metrics``): what AWS puts in CloudWatch for a function.

Computed from the emulator's own invocations (their REPORT records) and the front door's
throttles, with the names in :mod:`targets.monitoring`:

* ``lambda_invocations_total``: invocations that ran, function errors included, throttles
  not (CloudWatch's Invocations: the requests billed);
* ``lambda_errors_total``: invocations that ended in a function error: an unhandled
  exception (a direct invocation the handler cannot serve), a timeout, a crash or OOM
  kill, a failed Init (CloudWatch's Errors). A Function URL request the handler answers
  400 is *not* one: the function returned normally, as on AWS;
* ``lambda_throttles_total``: requests refused (429) for want of concurrency;
* ``lambda_duration_milliseconds``: histogram of REPORT's Duration (buckets: the
  contract's latency buckets in ms);
* ``lambda_concurrent_executions``: environments running an invocation now.

They are served in Prometheus's text format on ``GET /metrics`` of the emulator's own
port (the Function URL's; that path is the emulator's, not the function's, when metrics
are on) and on ``--metrics-port`` if one is given. A private registry in the emulator's
one process: no multiprocess mode. With ``--cloudwatch-file`` the per-minute statistics
CloudWatch keeps (:mod:`.cloudwatch`) are written there as each minute ends and at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, TextIO

from targets.awslambda.cloudwatch import CloudWatchPeriods
from targets.monitoring import (
    LAMBDA_CONCURRENT,
    LAMBDA_DURATION_MS,
    LAMBDA_ERRORS,
    LAMBDA_INVOCATIONS,
    LAMBDA_THROTTLES,
    LATENCY_BUCKETS_S,
)

#: Duration's buckets: the contract's latency buckets, in milliseconds.
DURATION_BUCKETS_MS = tuple(round(b * 1000.0, 6) for b in LATENCY_BUCKETS_S)


class FunctionMetrics:
    """Counts a function's invocations for ``/metrics`` and the CloudWatch file.

    :class:`.function.LambdaFunction` calls :meth:`throttled`, :meth:`running` and
    :meth:`invoked`; the emulator serves :meth:`exposition` and runs :meth:`flush_periods`
    until it stops, then :meth:`close`.
    """

    def __init__(self, function: str, cloudwatch_path: Path | None = None,
                 period_s: float | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        doc = "(CloudWatch's {} for the function)"
        self._invocations = Counter(LAMBDA_INVOCATIONS, "Invocations that ran, function "
                                    "errors included, throttles not " + doc.format(
                                        "Invocations"), registry=self.registry)
        self._errors = Counter(LAMBDA_ERRORS, "Invocations that ended in a function error: "
                               "unhandled exception, timeout, crash or OOM kill, failed "
                               "Init " + doc.format("Errors"), registry=self.registry)
        self._throttles = Counter(LAMBDA_THROTTLES, "Requests refused (429) for want of "
                                  "concurrency " + doc.format("Throttles"),
                                  registry=self.registry)
        self._duration = Histogram(LAMBDA_DURATION_MS, "REPORT's Duration, ms " + doc.format(
            "Duration"), buckets=DURATION_BUCKETS_MS, registry=self.registry)
        self._concurrent = Gauge(LAMBDA_CONCURRENT, "Environments running an invocation "
                                 "now " + doc.format("ConcurrentExecutions"),
                                 registry=self.registry)
        self.periods = CloudWatchPeriods(function, **({} if period_s is None
                                                      else {"period_s": period_s}))
        self.cloudwatch_path = cloudwatch_path
        self._file: TextIO | None = None
        if cloudwatch_path is not None:
            cloudwatch_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = cloudwatch_path.open("a")

    # -- what the function reports ----------------------------------------------------
    def throttled(self) -> None:
        self._throttles.inc()
        self.periods.throttle(time.time())

    def running(self, level: int) -> None:
        """Environments running an invocation changed to ``level``."""
        self._concurrent.set(level)
        self.periods.concurrency(time.time(), level)

    def invoked(self, duration_ms: float, error: bool) -> None:
        """An invocation ended (its REPORT): Duration, and whether a function error."""
        self._invocations.inc()
        if error:
            self._errors.inc()
        self._duration.observe(duration_ms)
        self.periods.invocation(time.time(), duration_ms, error)

    # -- what the emulator serves and writes ------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _write(self, lines: list[dict[str, Any]]) -> None:
        if self._file is None or self._file.closed or not lines:
            return
        self._file.write("".join(json.dumps(line) + "\n" for line in lines))
        self._file.flush()

    async def flush_periods(self) -> None:
        """Write each period's lines just after it ends, until cancelled."""
        period = self.periods.period_s
        while True:
            now = time.time()
            await asyncio.sleep(period - now % period + 0.01)
            self._write(self.periods.due(time.time()))

    def close(self) -> None:
        """Write every period left, the open one marked incomplete. Idempotent."""
        self._write(self.periods.drain(time.time()))
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
