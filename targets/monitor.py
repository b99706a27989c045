"""One serving process's monitoring: its Prometheus metrics and its prediction log.

A :class:`Monitor` is built in each serving process, after any fork (the prediction log
starts a thread), from the server's ``--metrics`` and ``--log-predictions``
(:func:`worker_monitor`); with both off there is none, and the apps keep the code path
they have without monitoring (no timing call, no branch per request).

* Metrics (:mod:`targets.monitoring`'s names and buckets): ``REQUESTS{outcome}`` and
  ``REQUEST_SECONDS`` per prediction request (:meth:`Monitor.answered`, called by the
  HTTP servers' middleware, :mod:`targets.monitorapp`, and the gRPC handlers),
  ``MODEL_SECONDS`` and ``BATCH_EXAMPLES`` per forward pass (:meth:`Monitor.serve`, or
  the batcher's :meth:`Monitor.forward` under ``--batching``), ``MODEL_INFO`` once.
* A server's workers are processes: their metrics live in prometheus_client's
  multiprocess mode, in a private folder the supervising process makes
  (:func:`multiprocess_dir`) before any worker imports prometheus_client, and any of
  them renders every worker's figures (``MultiProcessCollector``). One code path for 1 or
  N workers.
* In-process (:mod:`harness.loadgen.embedded`) the metrics live in prometheus_client's
  default registry, which the load generator's scraper reads (``registry=REGISTRY``).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets.bundles.protocol import serve_batch
from targets.errors import RequestError
from targets.monitoring import (
    BATCH_BUCKETS,
    BATCH_EXAMPLES,
    LATENCY_BUCKETS_S,
    MODEL_INFO,
    MODEL_SECONDS,
    OUTCOMES,
    REQUEST_SECONDS,
    REQUESTS,
    Monitoring,
)

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Bundle, Prediction
    from targets.predlog import PredictionLog

#: The environment variable prometheus_client reads at import (multiprocess mode).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OK, CLIENT_ERROR, SERVER_ERROR = OUTCOMES


def outcome_of_status(status: int) -> str:
    """An HTTP status's outcome: 2xx/3xx ok, 4xx client_error, else server_error."""
    if status < 400:
        return OK
    return CLIENT_ERROR if status < 500 else SERVER_ERROR


def outcome_of_error(exc: BaseException) -> str:
    """A failed prediction's outcome: the client's mistake (RequestError below 500) or a
    server error."""
    if isinstance(exc, RequestError) and exc.status < 500:
        return CLIENT_ERROR
    return SERVER_ERROR


class _Metrics:
    """The metric objects, in ``registry`` (None: unregistered, multiprocess mode)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(REQUESTS, "Prediction requests answered, by outcome",
                                ["outcome"], registry=registry)
        # Each outcome's child made now: the count reads 0, not absent, before any error.
        self.by_outcome = {outcome: self.requests.labels(outcome) for outcome in OUTCOMES}
        self.request_seconds = Histogram(
            REQUEST_SECONDS, "Time the application spent on a prediction request (s)",
            buckets=LATENCY_BUCKETS_S, registry=registry)
        self.model_seconds = Histogram(MODEL_SECONDS, "Model time per forward pass (s)",
                                       buckets=LATENCY_BUCKETS_S, registry=registry)
        self.batch_examples = Histogram(BATCH_EXAMPLES, "Examples per forward pass",
                                        buckets=BATCH_BUCKETS, registry=registry)
        self.model_info = Gauge(MODEL_INFO, "1 per process serving, by bundle and version",
                                ["bundle", "version"], multiprocess_mode="livesum",
                                registry=registry)


#: The metrics made in each registry: a registry refuses a name twice, and the in-process
#: application's default registry outlives any one Monitor. (Registry, metrics) by id:
#: the registry kept alive, so that its id is never another's.
_REGISTERED: dict[int, tuple[Any, _Metrics]] = {}


def _registered(registry: Any) -> _Metrics:
    known = _REGISTERED.get(id(registry))
    if known is None or known[0] is not registry:
        known = _REGISTERED[id(registry)] = (registry, _Metrics(registry))
    return known[1]


class Monitor:
    """One serving process's metrics (``metrics``) and prediction log (``log``); either
    may be None. ``registry``: where the metrics are registered and rendered from; None,
    multiprocess mode (:data:`MULTIPROC_ENV` must be set)."""

    def __init__(self, monitoring: Monitoring, bundle: Bundle,
                 prediction_log_dir: str | Path | None = None, *, registry: Any = None,
                 synchronous_log: bool = False, log_cpus: list[int] | None = None) -> None:
        # Here, not at the top: servers import this module with monitoring off too, and
        # the log's sqlite3 would lengthen every cold start for nothing.
        from targets.predlog import PredictionLog, model_version  # noqa: PLC0415

        self.monitoring = monitoring
        self.bundle = bundle
        self.version = model_version(bundle.name, bundle.info())
        self.registry = registry
        self.metrics: _Metrics | None = None
        if monitoring.metrics:
            if registry is None and not os.environ.get(MULTIPROC_ENV):
                raise RuntimeError(f"multiprocess metrics need {MULTIPROC_ENV}: the server "
                                   "sets it (multiprocess_dir) before its workers start")
            if registry is None:
                self.metrics = _Metrics(None)
            else:
                self.metrics = _registered(registry)
            self.metrics.model_info.labels(bundle.name, self.version).set(1)
        self.log: PredictionLog | None = None
        if monitoring.log_rate:
            if prediction_log_dir is None:
                raise ValueError("logging predictions needs a prediction log folder")
            self.log = PredictionLog(prediction_log_dir, monitoring.log_rate, bundle.name,
                                     self.version, synchronous=synchronous_log,
                                     cpus=log_cpus)

    # -- the request path ------------------------------------------------------------------
    def serve(self, batch: np.ndarray) -> list[Prediction]:
        """``serve_batch`` for one request, unbatched: the forward pass timed and counted
        (metrics on), the request logged with its predictions (when sampled)."""
        metrics = self.metrics
        if metrics is None:
            predictions = serve_batch(self.bundle, batch)
        else:
            started = time.perf_counter()
            try:
                predictions = serve_batch(self.bundle, batch)
            finally:
                metrics.model_seconds.observe(time.perf_counter() - started)
                metrics.batch_examples.observe(len(batch))
        if self.log is not None:
            self.log.record(batch, predictions)
        return predictions

    def served(self, batch: np.ndarray, predictions: Sequence[Prediction]) -> None:
        """A request the batcher answered (it observed the forward pass): logged."""
        if self.log is not None:
            self.log.record(batch, predictions)

    def forward(self, seconds: float, examples: int) -> None:
        """The batcher's forward pass of ``examples`` took ``seconds``."""
        if self.metrics is not None:
            self.metrics.model_seconds.observe(seconds)
            self.metrics.batch_examples.observe(examples)

    def answered(self, outcome: str, seconds: float) -> None:
        """A prediction request was answered with ``outcome`` after ``seconds`` in the
        application."""
        if self.metrics is not None:
            self.metrics.by_outcome[outcome].inc()
            self.metrics.request_seconds.observe(seconds)

    def handle(self, bundle: Bundle, batch: np.ndarray) -> list[Prediction]:
        """A whole request in the in-process application (``serve_batch``'s signature):
        :meth:`serve`, counted by outcome and timed (metrics on)."""
        if self.metrics is None:
            return self.serve(batch)
        started = time.perf_counter()
        try:
            predictions = self.serve(batch)
        except Exception as exc:
            self.answered(outcome_of_error(exc), time.perf_counter() - started)
            raise
        self.answered(OK, time.perf_counter() - started)
        return predictions

    def predictor(self, batcher: Any = None) -> Callable[[np.ndarray], list[Prediction]]:
        """``batch -> predictions`` for the app: :meth:`serve`, or through ``batcher``
        (built with this monitor) and logged."""
        if batcher is None:
            return self.serve
        if self.log is None:
            return batcher.predict  # type: ignore[no-any-return]
        predict, record = batcher.predict, self.log.record

        def batched(batch: np.ndarray) -> list[Prediction]:
            predictions: list[Prediction] = predict(batch)
            record(batch, predictions)
            return predictions

        return batched

    # -- the metrics endpoint --------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format and its content type: every worker's
        (multiprocess), or this registry's."""
        return exposition(self.registry)

    def close(self) -> None:
        """At the process's exit: flushes the prediction log. Idempotent."""
        if self.log is not None:
            self.log.close()


def exposition(registry: Any = None) -> tuple[bytes, str]:
    """``registry``'s metrics in the text format (None: every process's, multiprocess
    mode), and the content type to answer with."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    if registry is None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def predictor(bundle: Bundle, batcher: Any = None, monitor: Monitor | None = None
              ) -> Callable[[np.ndarray], list[Prediction]]:
    """``batch -> predictions`` for an app, chosen once: without monitoring the model's
    call (or the batcher's) and no more; with it, :meth:`Monitor.predictor`."""
    if monitor is not None:
        return monitor.predictor(batcher)
    if batcher is not None:
        return batcher.predict  # type: ignore[no-any-return]
    return functools.partial(serve_batch, bundle)


def worker_monitor(monitoring: Monitoring, bundle: Bundle,
                   prediction_log_dir: str | Path | None) -> Monitor | None:
    """In a server's worker, after the fork, its bundle loaded: its Monitor (multiprocess
    metrics), or None when monitoring is off. Close it at the worker's exit."""
    if monitoring.off:
        return None
    return Monitor(monitoring, bundle, prediction_log_dir)


def inprocess_monitor(monitoring: Monitoring, bundle: Bundle,
                      prediction_log_dir: str | Path | None,
                      cpus: list[int] | None = None) -> Monitor | None:
    """The in-process application's Monitor: metrics in prometheus_client's default
    registry (what the load generator scrapes in its own process, ``INPROCESS_URL``), a
    background-thread prediction log whose thread runs on ``cpus`` (the target's: its
    writing is the application's work, not the load generator's); None when off."""
    if monitoring.off:
        return None
    from prometheus_client import REGISTRY

    return Monitor(monitoring, bundle, prediction_log_dir, registry=REGISTRY, log_cpus=cpus)


def multiprocess_dir(monitoring: Monitoring) -> str | None:
    """In the supervising process, before any worker starts (or prometheus_client is
    imported): a fresh private folder for the workers' metrics, set as
    :data:`MULTIPROC_ENV` and removed when this process exits. None when metrics are off."""
    if not monitoring.metrics:
        return None
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the multiprocess folder "
                           "was set: its metrics would not be shared between workers")
    folder = tempfile.mkdtemp(prefix="deploybench-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked worker that runs atexit (gunicorn's)
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


def mark_dead(pid: int) -> None:
    """A worker exited: its live gauges (MODEL_INFO) stop counting; its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exit_if_monitoring(args: Any, why: str) -> None:
    """For a server that cannot monitor: exit 2 with ``why`` when ``--metrics`` or
    ``--log-predictions`` was given, rather than ignore it."""
    asked = [flag for flag, on in (("--metrics", getattr(args, "metrics", False)),
                                   ("--log-predictions",
                                    bool(getattr(args, "log_predictions", 0.0))))
             if on]
    if asked:
        print(f"error: {' and '.join(asked)}: {why}", file=sys.stderr, flush=True)
        raise SystemExit(2)
