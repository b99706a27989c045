"""Every deployment deploybench knows, registered once.

A deployment is a protocol client (:class:`targets.base.PredictClient`: the HTTP API,
gRPC, Lambda's Invoke API), an options dataclass (``run``'s ``--NAME-FIELD`` options fill
it: ``--flask-workers`` is ``FlaskOptions.workers``), a server entry point (``python -m
SERVER``, ``deploybench serve NAME``) and how its target is built. The runtime (a local
process, a Docker container) is handed to the target, not chosen by subclassing; an
endpoint already running elsewhere (``--endpoint NAME=URL``) gets its protocol's client
by the URL's scheme, the same client as the deployment deploybench starts.

Adding a deployment is one entry in :data:`DEPLOYMENTS` (and its folder with a server,
a target and an options dataclass).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from targets.awslambda.client import InvokeClient
from targets.awslambda.invoke import parse_address
from targets.awslambda.target import LambdaOptions, LambdaTarget
from targets.base import PredictClient, Target
from targets.batching import BatchingSpec
from targets.fake import FakeTarget
from targets.fastapi.target import FastapiOptions, FastapiTarget
from targets.flask.target import FlaskOptions, FlaskTarget
from targets.grpc.client import GrpcClient
from targets.grpc.target import GrpcOptions, GrpcTarget
from targets.inprocess.target import InProcessTarget
from targets.monitoring import OFF, Monitoring
from targets.nullhttp.target import NullHttpOptions, NullHttpTarget
from targets.rayserve.target import RayServeOptions, RayServeTarget
from targets.runtimes.external import ExternalTarget
from targets.runtimes.process import LOCAL
from targets.runtimes.protocol import Runtime
from targets.wire import codec
from targets.wire.httpapi import HttpApiClient

#: Environments the Lambda emulator may start unless told (each is a Python process with
#: the model: ~100 MB or more); beyond it requests are throttled (429) and counted failed.
LAMBDA_DEFAULT_CONCURRENCY_CAP = 64


@dataclass(frozen=True)
class Setup:
    """What every target is built with, whatever its deployment."""

    #: The result's name (``flask``, or ``flask-binary`` with --encodings): its log and
    #: records files are named after it.
    name: str
    bundle: str
    cpus: tuple[int, ...]
    encoding: str
    log_dir: Path
    limits: codec.Limits = codec.DEFAULT_LIMITS
    #: Where a served target's server runs (--runtime).
    runtime: Runtime = LOCAL
    #: The scenario's highest concurrency (sizes Lambda's concurrency unless given).
    peak_concurrency: int = 1
    #: --batching: the server's batcher settings (a ``TARGET+batch`` result); None: one
    #: forward pass per request. Only deployments with ``batching`` take it.
    batching: BatchingSpec | None = None
    #: --metrics, --log-predictions, or one mode of --monitoring (a ``TARGET+metrics``
    #: result): what the target does besides serving.
    monitoring: Monitoring = OFF

    def path(self, suffix: str) -> Path:
        return self.log_dir / f"{self.name}{suffix}"


@dataclass(frozen=True)
class Wire:
    """What a deployment's requests are on the wire (``run --encodings``)."""

    #: Measured once per encoding when a run compares several: its requests are the
    #: codec's HTTP bodies.
    per_encoding: bool = False
    #: What its requests are whatever the run's encoding ("protobuf"); None: that encoding.
    fixed: str | None = None
    #: No wire at all (in-process).
    none: bool = False

    def of(self, encoding: str) -> str | None:
        return None if self.none else self.fixed or encoding


HTTP_BODIES = Wire(per_encoding=True)
PROTOBUF = Wire(fixed="protobuf")
NO_WIRE = Wire(none=True)
#: A Lambda function's direct-invocation events: measured once, in the first encoding.
EVENTS = Wire()


@dataclass(frozen=True)
class NoOptions:
    """A deployment without options of its own."""


@dataclass(frozen=True)
class Deployment:
    name: str
    #: The load generator's protocol (LoadSpec's ``protocol``).
    protocol: str
    #: Its options; ``run``'s values named NAME_FIELD fill them (:meth:`options_from`).
    options: type[Any]
    #: Builds its target from the setup and the options.
    build: Callable[[Setup, Any], Target]
    wire: Wire
    #: Its server's entry point (``python -m SERVER``; its ``serve(args)`` is
    #: ``deploybench serve NAME``); None: nothing is served.
    server: str | None = None
    #: "run": measured by ``run`` unless --targets says otherwise; "test": for tests of
    #: the runner (a simulated load); "calibrate": for ``deploybench calibrate`` only.
    role: str = "run"
    #: docker/NAME.Dockerfile builds its image: ``--runtime docker`` runs it in a container.
    image: bool = False
    #: Driven by the in-process driver, inside the load generator's process.
    in_load_generator: bool = False
    #: Its server can batch requests into one forward pass (``run --batching``; its
    #: target takes ``batching=`` and logs each pass in ``batch_log_dir``).
    batching: bool = False
    #: Measured by ``run`` when --targets is not given (role "run" only). False: only when
    #: named, for a deployment too heavy to start on every run (rayserve: a Ray cluster).
    by_default: bool = True
    #: Modules its server needs beyond deploybench's own dependencies, and the extra
    #: that installs them (``pip install -e '.[EXTRA]'``).
    requires: tuple[str, ...] = ()
    extra: str | None = None
    #: It can expose metrics and log predictions (``run --metrics``, ``--log-predictions``,
    #: ``--monitoring``); False: its server refuses them, so the run does before starting.
    monitors: bool = True

    def missing(self) -> str | None:
        """Why it cannot run here (a module it needs is not installed), with the fix;
        None when it can. Looked up without importing anything."""
        absent = [m for m in self.requires if not _installed(m)]
        if not absent:
            return None
        return (f"{self.name} needs {', '.join(absent)}, which is not installed. Install "
                f"it with `pip install -e '.[{self.extra}]'`")

    def options_from(self, values: Mapping[str, Any]) -> Any:
        """Its options from ``run``'s values named NAME_FIELD (``flask_workers``), those
        not given (None) left at their defaults."""
        prefix = self.name.replace("-", "_") + "_"
        given = {f.name: values[prefix + f.name] for f in fields(self.options)
                 if values.get(prefix + f.name) is not None}
        return self.options(**given)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _inprocess(setup: Setup, options: NoOptions) -> Target:
    return InProcessTarget(setup.bundle, list(setup.cpus), monitoring=setup.monitoring,
                           prediction_log_dir=setup.path("-predictions")
                           if setup.monitoring.log_rate else None)


def _flask(setup: Setup, options: FlaskOptions) -> Target:
    worker_class = {"worker_class": options.worker_class} if options.worker_class else {}
    return FlaskTarget(setup.bundle, list(setup.cpus), setup.encoding,
                       workers=options.workers, threads=options.threads,
                       log_path=setup.path(".log"), limits=setup.limits,
                       runtime=setup.runtime, batching=setup.batching,
                       monitoring=setup.monitoring, **worker_class)


def _fastapi(setup: Setup, options: FastapiOptions) -> Target:
    pool = {"pool": options.pool} if options.pool else {}
    return FastapiTarget(setup.bundle, list(setup.cpus), setup.encoding,
                         workers=options.workers, threads=options.threads,
                         log_path=setup.path(".log"), limits=setup.limits,
                         runtime=setup.runtime, batching=setup.batching,
                         monitoring=setup.monitoring, **pool)


def _grpc(setup: Setup, options: GrpcOptions) -> Target:
    api = {"api": options.api} if options.api else {}
    return GrpcTarget(setup.bundle, list(setup.cpus), setup.encoding, workers=options.workers,
                      threads=options.threads, log_path=setup.path(".log"),
                      limits=setup.limits, runtime=setup.runtime, batching=setup.batching,
                      monitoring=setup.monitoring, **api)


def _lambda(setup: Setup, options: LambdaOptions) -> Target:
    given: dict[str, Any] = {}
    if options.memory_mb is not None:
        given["memory_mb"] = options.memory_mb
    if options.timeout_s is not None:
        given["timeout_s"] = options.timeout_s
    if options.sandbox is not None:
        given["sandbox"] = options.sandbox
    if options.freeze is not None:
        given["freeze"] = options.freeze
    concurrency = options.concurrency or min(setup.peak_concurrency,
                                             LAMBDA_DEFAULT_CONCURRENCY_CAP)
    return LambdaTarget(setup.bundle, list(setup.cpus), setup.encoding,
                        concurrency=concurrency, log_path=setup.path(".log"),
                        limits=setup.limits, records_path=setup.path("-invocations.jsonl"),
                        runtime=setup.runtime, monitoring=setup.monitoring, **given)


def _null_http(setup: Setup, options: NullHttpOptions) -> Target:
    return NullHttpTarget(setup.bundle, list(setup.cpus), setup.encoding,
                          log_path=setup.path(".log"), limits=setup.limits,
                          runtime=setup.runtime, delay_ms=options.delay_ms,
                          stall_after_s=options.stall_after_s, stall_s=options.stall_s)


def _rayserve(setup: Setup, options: RayServeOptions) -> Target:
    return RayServeTarget(setup.bundle, list(setup.cpus), setup.encoding,
                          workers=options.workers, threads=options.threads,
                          log_path=setup.path(".log"), limits=setup.limits,
                          runtime=setup.runtime, batching=setup.batching,
                          monitoring=setup.monitoring)


def _fake(setup: Setup, options: NoOptions) -> Target:
    return FakeTarget(setup.bundle)


#: Every deployment, in report order.
DEPLOYMENTS: dict[str, Deployment] = {d.name: d for d in (
    Deployment("inprocess", "inprocess", NoOptions, _inprocess, NO_WIRE,
               in_load_generator=True),
    Deployment("flask", "http", FlaskOptions, _flask, HTTP_BODIES,
               server="targets.flask.server", image=True, batching=True),
    Deployment("fastapi", "http", FastapiOptions, _fastapi, HTTP_BODIES,
               server="targets.fastapi.server", image=True, batching=True),
    Deployment("grpc", "grpc", GrpcOptions, _grpc, PROTOBUF, server="targets.grpc.server",
               image=True, batching=True),
    Deployment("lambda", "http", LambdaOptions, _lambda, HTTP_BODIES,
               server="targets.awslambda.server", image=True),
    # A local process only (no container image: --runtime docker refuses it). Measured
    # only when named: a Ray cluster takes ~10 s and ~1.3 GB to start on digits.
    Deployment("rayserve", "http", RayServeOptions, _rayserve, HTTP_BODIES,
               server="targets.rayserve.server", by_default=False,
               requires=("ray", "ray.serve"), extra="ray", batching=True, monitors=False),
    Deployment("null-http", "http", NullHttpOptions, _null_http, HTTP_BODIES,
               server="targets.nullhttp.server", role="calibrate", monitors=False),
    # Its simulated load does not depend on the encoding; measured once per encoding, it
    # stands in for flask and lambda in tests of the runner and the report. It keeps no
    # batch log: marked batching so tests expand `fake+batch` and give it one.
    Deployment("fake", "simulated", NoOptions, _fake, HTTP_BODIES, role="test",
               batching=True),
)}


def find(name: str) -> Deployment | None:
    return DEPLOYMENTS.get(name)


def named(role: str) -> tuple[str, ...]:
    """The deployments of one role, in report order."""
    return tuple(d.name for d in DEPLOYMENTS.values() if d.role == role)


#: What `run --targets` accepts, in report order.
RUNNABLE = named("run")
#: What `run` measures unless told, in report order.
BUILT_IN = tuple(n for n in RUNNABLE if DEPLOYMENTS[n].by_default)
#: Deployments for tests of the runner: "fake".
FOR_TESTS = named("test")
#: The deployments that have a container image (docker/build.sh builds them).
WITH_IMAGE = tuple(d.name for d in DEPLOYMENTS.values() if d.image)


def build(deployment: Deployment, setup: Setup, options: Any = None) -> Target:
    """``deployment``'s target, named after the result (``options``: an instance of its
    options dataclass; None: the defaults)."""
    target = deployment.build(setup, deployment.options() if options is None else options)
    target.name = setup.name
    return target


def simulated(names: Sequence[str]) -> bool:
    """Every one of ``names`` is a deployment whose load is simulated."""
    found = [find(n) for n in names]
    return bool(found) and all(d is not None and d.protocol == "simulated" for d in found)


def can_batch(name: str) -> bool:
    """Whether the deployment ``name`` batches with ``run --batching`` (an endpoint, or
    a name not registered, never does)."""
    found = find(name)
    return found is not None and found.batching


def in_load_generator(names: Sequence[str]) -> list[str]:
    """Those of ``names`` that run inside the load generator's process."""
    return [n for n in names if (d := find(n)) is not None and d.in_load_generator]


# -- endpoints already running elsewhere ----------------------------------------------

@dataclass(frozen=True)
class EndpointKind:
    """An ``--endpoint`` URL's scheme: its protocol's client and its wire."""

    scheme: str
    wire: Wire
    #: The client for (name, url, encoding, setup).
    client: Callable[[str, str, str, Setup | None], PredictClient]


def _http_client(name: str, url: str, encoding: str, setup: Setup | None) -> PredictClient:
    parts = urlsplit(url)
    return HttpApiClient(parts.hostname or "", parts.port or 0, encoding, prefix=parts.path,
                         who=f"endpoint {name}")


def _grpc_client(name: str, url: str, encoding: str, setup: Setup | None) -> PredictClient:
    parts = urlsplit(url)
    return GrpcClient(f"{parts.hostname}:{parts.port}")


def _invoke_client(name: str, url: str, encoding: str, setup: Setup | None
                   ) -> PredictClient:
    return InvokeClient(name, url, encoding,
                        records_dir=setup.path("-invocations") if setup is not None else None)


ENDPOINT_KINDS: dict[str, EndpointKind] = {k.scheme: k for k in (
    # The Flask API: the flask and fastapi targets, the Lambda emulator's Function URL, or anything
    # serving it (POST PREFIX/predict, GET PREFIX/healthz).
    EndpointKind("http", HTTP_BODIES, _http_client),
    # The gRPC API (targets/grpc/predict.proto), health service included.
    EndpointKind("grpc", PROTOBUF, _grpc_client),
    # ``lambda://REGION/FUNCTION[:QUALIFIER]`` or a function ARN: a function running this
    # project's handler, called through the Invoke API with boto3 (real AWS, or with
    # ``?endpoint=URL`` LocalStack or the emulator).
    EndpointKind("lambda", EVENTS, _invoke_client),
)}


def _scheme(url: str) -> str:
    return "lambda" if url.startswith(("lambda://", "arn:")) else urlsplit(url).scheme


def endpoint_kind(url: str) -> EndpointKind:
    """The kind of a URL that :func:`parse_endpoint` accepted."""
    return ENDPOINT_KINDS[_scheme(url)]


def parse_endpoint(text: str) -> tuple[str, str]:
    """``NAME=URL`` -> (name, url), checked; raises ValueError with what to write."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise ValueError(f"bad endpoint {text!r}: write NAME=URL, e.g. "
                         "k8s-flask=http://10.0.0.5:8000 or k8s-grpc=grpc://10.0.0.6:50051")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"bad endpoint name {name!r}: letters, digits, '-' and '_' only")
    if _scheme(url) == "lambda":
        try:
            parse_address(url)
        except ValueError as exc:
            raise ValueError(f"endpoint {name}: {exc}") from None
        return name, url
    parts = urlsplit(url)
    if parts.scheme not in ENDPOINT_KINDS:
        schemes = " or ".join(s + "://" for s in ENDPOINT_KINDS)
        raise ValueError(f"endpoint {name}: scheme {parts.scheme or '(none)'!r} is not "
                         f"supported; use {schemes}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"endpoint {name}: {url!r} needs a host and a port")
    if parts.scheme == "grpc" and parts.path not in ("", "/"):
        raise ValueError(f"endpoint {name}: a gRPC address has no path ({url!r})")
    return name, url


def external(url: str, setup: Setup) -> ExternalTarget:
    """The endpoint at ``url`` as a target named ``setup.name``, through its protocol's
    client (records of a Lambda function's invocations under ``setup.log_dir``)."""
    kind = endpoint_kind(url)
    shown = url if kind.scheme == "lambda" else url.rstrip("/")
    return ExternalTarget(setup.name, shown,
                          kind.client(setup.name, shown, setup.encoding, setup))


def wire_of(deployment: str, url: str | None) -> Wire:
    """The wire of a deployment (an endpoint's by its URL; one not registered: the
    run's encoding, once)."""
    if url is not None:
        return endpoint_kind(url).wire
    found = find(deployment)
    return found.wire if found is not None else EVENTS

