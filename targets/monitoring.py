"""Watching a deployment in production: what the harness and the targets share.

Two things a team switches on in production, each with a cost the report measures:

* **Metrics** (``run --metrics``, a server's ``--metrics``): every served target exposes
  Prometheus metrics in the text format, on ``GET /metrics`` (the HTTP targets) or on a
  side port (gRPC: ``--metrics-port``). The names are the same for every deployment
  (below); the Lambda emulator exposes instead the metrics AWS puts in CloudWatch,
  computed from its REPORT records (``lambda_*``). In-process, the application's own
  registry in the load generator's process holds them.
* **A log of live predictions** (``run --log-predictions RATE``, a server's
  ``--log-predictions RATE --prediction-log-dir DIR``): a fraction of the requests is
  appended, input, output, model version and time, to a local store
  (:mod:`targets.predlog`), off the request path where the deployment allows it.

The load generator scrapes the metrics when each stage starts and once it has drained
(:class:`Scrape`), so the target's own count of the stage's requests can be checked
against the load generator's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: How the load generator reaches the in-process target's registry (LoadSpec's
#: ``metrics_url``): it lives in the load generator's own process.
INPROCESS_URL = "inprocess:"

# -- the metrics every served target exposes ------------------------------------------
#: Counter of prediction requests answered (``/predict``, the gRPC Predict method; never
#: health checks or /metrics), label ``outcome``: "ok", "client_error" (4xx, or gRPC's
#: INVALID_ARGUMENT and the like) or "server_error". Exposed as ``..._total``.
REQUESTS = "deploybench_requests"
OUTCOMES = ("ok", "client_error", "server_error")
#: Histogram of the time the application spent on a prediction request, in seconds: from
#: the server handing the request to the application (its headers parsed) to the answer
#: starting: reading the body, any wait for a model thread of the worker or for a batch,
#: decoding, the model, encoding (gRPC: from its handler's call, the message already
#: read). Not the connection, the server's header parsing or the wait for a worker.
REQUEST_SECONDS = "deploybench_request_seconds"
#: Histogram of the model's time per forward pass, in seconds (serve_batch).
MODEL_SECONDS = "deploybench_model_seconds"
#: Histogram of the examples per forward pass (under --batching, several requests').
BATCH_EXAMPLES = "deploybench_batch_examples"
#: Gauge: 1 per process serving, labelled with the bundle and model version.
MODEL_INFO = "deploybench_model_info"

# -- what the Lambda emulator exposes: CloudWatch's Lambda metrics ---------------------
#: Counters as CloudWatch's Sum statistic: invocations that ran (errors included, throttles
#: not), function errors, and invocations refused for want of concurrency (429).
LAMBDA_INVOCATIONS = "lambda_invocations"
LAMBDA_ERRORS = "lambda_errors"
LAMBDA_THROTTLES = "lambda_throttles"
#: Histogram of REPORT's Duration, in milliseconds (CloudWatch's Duration metric).
LAMBDA_DURATION_MS = "lambda_duration_milliseconds"
#: Gauge: environments running an invocation now (CloudWatch's ConcurrentExecutions;
#: its Maximum per minute is what CloudWatch keeps).
LAMBDA_CONCURRENT = "lambda_concurrent_executions"

#: Bucket bounds of the latency histograms, in seconds: 50 us to 10 s, about 1.5x apart
#: below 10 ms, so a p99 read from buckets is within one bucket of the true one.
LATENCY_BUCKETS_S = (0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001,
                     0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                     0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class Monitoring:
    """What a target is asked to do besides serving: expose metrics, log predictions."""

    metrics: bool = False
    #: Fraction of prediction requests logged (0: none, 1: every one).
    log_rate: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.log_rate <= 1.0) or math.isnan(self.log_rate):
            raise ValueError(f"a log rate is a fraction from 0 to 1 (got {self.log_rate})")

    @property
    def off(self) -> bool:
        return not self.metrics and self.log_rate == 0.0

    @property
    def mode(self) -> str:
        """"off", "metrics", "log" or "metrics+log"."""
        parts = (["metrics"] if self.metrics else []) + (["log"] if self.log_rate else [])
        return "+".join(parts) or "off"

    @property
    def suffix(self) -> str:
        """What a result measured in this mode is named with when a run compares modes
        (``run --monitoring``): "" when off, else ``+metrics``, ``+log``, ``+metrics+log``."""
        return "" if self.off else "+" + self.mode

    @classmethod
    def parse_mode(cls, text: str, log_rate: float = 1.0) -> Monitoring:
        """One of ``run --monitoring``'s modes: off, metrics, log, metrics+log (logging
        at ``log_rate``)."""
        mode = text.strip().lower()
        if mode not in MODES:
            raise ValueError(f"unknown monitoring mode {text!r}: use {', '.join(MODES)}")
        return cls(metrics="metrics" in mode, log_rate=log_rate if "log" in mode else 0.0)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "metrics": self.metrics, "log_rate": self.log_rate}


MODES = ("off", "metrics", "log", "metrics+log")
OFF = Monitoring()


def check_modes(names: Sequence[str], where: str) -> tuple[str, ...]:
    """A list of modes as typed in ``where`` (``--monitoring``, a scenario's key):
    trimmed and lower-cased, each one of :data:`MODES`, none twice. Raises ValueError
    saying which is wrong."""
    modes = tuple(name.strip().lower() for name in names)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown monitoring mode {unknown[0]!r} in {where}; choose from "
                         f"{', '.join(MODES)}, e.g. off,metrics,metrics+log")
    if len(set(modes)) != len(modes):
        raise ValueError(f"a monitoring mode is named twice in {where} ({', '.join(modes)})")
    return modes


# -- what a scrape says -----------------------------------------------------------------
@dataclass(frozen=True)
class Scrape:
    """The figures the cross-check needs from one scrape of a target's metrics; counts
    are cumulative since the target started (Prometheus counters)."""

    #: Wall clock when it was read.
    at: float
    #: Prediction requests the target counted, all outcomes (Lambda: invocations and
    #: throttles: each is a request the load generator sent).
    requests: float
    #: Of those, errors (Lambda: function errors and throttles).
    errors: float
    #: The request-time histogram's sum (seconds) and count; Lambda: Duration's.
    latency_sum_s: float
    latency_count: float
    #: The request-time histogram's cumulative buckets: (upper bound in s, count).
    buckets: tuple[tuple[float, float], ...] = ()

    def since(self, before: Scrape) -> Scrape:
        """What the target counted between ``before`` and this scrape."""
        earlier = dict(before.buckets)
        return Scrape(at=self.at, requests=self.requests - before.requests,
                      errors=self.errors - before.errors,
                      latency_sum_s=self.latency_sum_s - before.latency_sum_s,
                      latency_count=self.latency_count - before.latency_count,
                      buckets=tuple((le, n - earlier.get(le, 0.0)) for le, n in self.buckets))

    @property
    def mean_latency_s(self) -> float | None:
        return self.latency_sum_s / self.latency_count if self.latency_count else None

    def quantile_s(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the request-time histogram, interpolated within
        its bucket as Prometheus's histogram_quantile does (None: nothing counted)."""
        if not self.buckets or self.buckets[-1][1] <= 0:
            return None
        total = self.buckets[-1][1]
        rank = q * total
        lower, below = 0.0, 0.0
        for le, count in self.buckets:
            if count >= rank:
                if math.isinf(le):
                    return lower
                inside = count - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, count
        return lower

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "requests": self.requests, "errors": self.errors,
                "latency_sum_s": self.latency_sum_s, "latency_count": self.latency_count,
                "buckets": [[le if math.isfinite(le) else "+Inf", n]
                            for le, n in self.buckets]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scrape:
        return cls(at=data["at"], requests=data["requests"], errors=data["errors"],
                   latency_sum_s=data["latency_sum_s"], latency_count=data["latency_count"],
                   buckets=tuple((math.inf if le == "+Inf" else float(le), float(n))
                                 for le, n in data.get("buckets", [])))


def parse_scrape(text: str, at: float) -> Scrape:
    """The cross-check's figures from a scrape in Prometheus's text format: deploybench's
    own metrics, or the Lambda emulator's CloudWatch ones. Raises ValueError when the
    text holds neither, or is not that format."""
    # Here, not at the top: prometheus_client picks its multiprocess mode at import, from
    # PROMETHEUS_MULTIPROC_DIR, which a server sets before its workers import it.
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    # A labelled counter exposes no sample before its first request, only its HELP and
    # TYPE: the family's name says which metrics the target has (all zero so far).
    names: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[key] = values.get(key, 0.0) + sample.value
        names.update(name for name, _ in values)
        if any(name.startswith(REQUESTS) for name in names):
            return _figures(values, at, requests=(REQUESTS + "_total",),
                            errors=(REQUESTS + "_total",), histogram=REQUEST_SECONDS,
                            scale=1.0)
        if any(name.startswith("lambda_") for name in names):
            return _figures(values, at,
                            requests=(LAMBDA_INVOCATIONS + "_total",
                                      LAMBDA_THROTTLES + "_total"),
                            errors=(LAMBDA_ERRORS + "_total", LAMBDA_THROTTLES + "_total"),
                            histogram=LAMBDA_DURATION_MS, scale=0.001)
    except (LookupError, TypeError) as exc:  # the parser's, or a bucket without its "le"
        raise ValueError(f"the scrape is not Prometheus's text format ({type(exc).__name__}: "
                         f"{exc})") from exc
    raise ValueError("the scrape holds neither deploybench's metrics "
                     f"({REQUESTS}_total) nor the Lambda emulator's ({LAMBDA_INVOCATIONS}_total)")


def _figures(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], at: float, *,
             requests: tuple[str, ...], errors: tuple[str, ...], histogram: str,
             scale: float) -> Scrape:
    def total(name: str, error_only: bool = False) -> float:
        out = 0.0
        for (sample, labels), value in values.items():
            if sample != name:
                continue
            outcome = dict(labels).get("outcome")
            if error_only and outcome == "ok":
                continue
            out += value
        return out

    buckets: dict[float, float] = {}
    for (sample, labels), value in values.items():
        if sample == histogram + "_bucket":
            le = float(dict(labels)["le"])
            buckets[le * scale if math.isfinite(le) else le] = \
                buckets.get(le * scale if math.isfinite(le) else le, 0.0) + value
    return Scrape(at=at, requests=sum(total(n) for n in requests),
                  errors=sum(total(n, error_only=True) for n in errors),
                  latency_sum_s=total(histogram + "_sum") * scale,
                  latency_count=total(histogram + "_count"),
                  buckets=tuple(sorted(buckets.items())))
