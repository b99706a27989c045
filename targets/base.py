"""The one small interface every deployment target implements."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypedDict

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction


class HttpPayload(TypedDict):
    """One pre-encoded request the HTTP load user sends (body base64 in plan files)."""

    body: bytes
    headers: dict[str, str]


class LoadSpec(TypedDict, total=False):
    """How the load generator reaches a running target; JSON-serialisable once bodies are."""

    #: "http", "grpc", "lambda-invoke", "inprocess" or "simulated"; selects the Locust
    #: user class (or, for "inprocess", the in-process driver).
    protocol: str
    #: http: base URL and path of the prediction endpoint, and what to send.
    url: str
    path: str
    payloads: list[HttpPayload]
    #: grpc: host:port, the full method name, and serialised requests (base64).
    address: str
    method: str
    messages_b64: list[str]
    #: lambda-invoke: the function (FunctionAddress fields), the direct-invocation events
    #: (JSON text) and where the users append each call's REPORT fields.
    function: dict[str, Any]
    events: list[str]
    records_dir: str | None
    #: lambda-invoke: whether calls are signed (False: an emulator, without credentials).
    signed: bool
    #: http: a response header whose presence marks a cold start (the Lambda front door).
    cold_header: str
    #: inprocess: the bundle the in-process driver loads and calls directly.
    bundle: str
    #: CPUs the target's work runs on.
    cpus: list[int]
    #: Process IDs whose CPU time and memory are the target's (children included).
    watch_pids: list[int]
    #: run --metrics: the target's Prometheus metrics, scraped by the load generator at
    #: each stage's edges (targets.monitoring.INPROCESS_URL: the in-process registry).
    metrics_url: str
    #: inprocess: --metrics and --log-predictions (Monitoring.describe()), and where the
    #: in-process application logs its predictions.
    monitoring: dict[str, Any]
    prediction_log_dir: str
    #: simulated: a fixed service time and how many requests it serves at once.
    service_time_s: float
    capacity: int


class Target(Protocol):
    """A deployment of a bundle: started, health-checked, asked to predict, described, stopped.

    A target is a context manager, so whatever it starts is always stopped.
    """

    name: str

    def start(self) -> None:
        """Bring the deployment up and return once it answers health checks."""

    def health(self) -> bool:
        """True when the deployment answers its health check now."""

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        """One prediction through the deployment's real path (used for parity)."""

    def describe(self) -> dict[str, Any]:
        """Settings and facts for the result file: runtime, workers, threads, CPUs, startup."""

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        """What the load generator needs to drive this target with ``examples``."""

    def stop(self) -> None:
        """Stop everything the target started, by PID. Idempotent."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True)
class Health:
    """What a deployment's health check said: whether it serves, and from which process."""

    ok: bool
    #: The PID the server says it answers from (None: it does not say).
    pid: int | None = None


class PredictClient(Protocol):
    """A deployment's protocol as the orchestrator speaks it (the HTTP API, gRPC, Lambda's
    Invoke API): one client, whether deploybench started the server or it runs elsewhere.
    """

    #: What its requests are, as describe() says it.
    encoding: str

    def open(self) -> None:
        """Get ready to call (credentials, folders); raises TargetError when it cannot."""

    def probe(self) -> Health:
        """One health check, now."""

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        """One prediction through the protocol; raises TargetError on a bad answer."""

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        """The protocol's part of the load spec (the target adds CPUs and PIDs)."""

    def facts(self) -> dict[str, Any]:
        """What this protocol adds to describe()."""

    def platform_records(self) -> list[dict[str, Any]] | None:
        """Per-invocation records the platform reported (None: it reports none)."""

    def final_facts(self) -> dict[str, Any]:
        """Figures read once the load is over."""

    def close(self) -> None:
        """Close connections; the client may be used again after."""


class ClientBase:
    """What a protocol without a platform's records or connection set-up answers."""

    def open(self) -> None:
        pass

    def facts(self) -> dict[str, Any]:
        return {}

    def platform_records(self) -> list[dict[str, Any]] | None:
        return None

    def final_facts(self) -> dict[str, Any]:
        return {}


class TargetBase:
    """Context-manager plumbing shared by the concrete targets."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
