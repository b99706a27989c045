"""What every server entry point shares (``python -m targets.<name>.server``).

Arguments, then the same preparation before any worker starts: die with the harness
that started it, set torch's thread count, train or verify the bundle once, pin to the
target CPUs (workers inherit the set), and warn when binding beyond loopback.

``--batching`` and ``--batch-log-dir`` are read here for every server; a server that
batches builds its :class:`targets.batcher.Batcher` in each worker after the fork
(:func:`targets.batcher.worker_batcher`), and one that cannot batch refuses the option
(:func:`exit_if_batching`) rather than ignore it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from targets.batching import BatchingSpec
from targets.bundles.resolve import get_bundle
from targets.bundles.user import label
from targets.monitoring import OFF, Monitoring
from targets.runtimes.cpuset import format_cpus, parse_cpus
from targets.runtimes.process import die_with_parent
from targets.wire import codec


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, default_port: int,
                  default_threads: int, threads_help: str,
                  batch_waits_in_threads: bool = True) -> None:
    parser.add_argument("--bundle", default="digits", help="bundle to serve (default: digits)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: not reachable from outside)")
    parser.add_argument("--port", type=int, default=default_port,
                        help=f"TCP port (default {default_port})")
    parser.add_argument("--cpus", type=parse_cpus, default=None,
                        help="CPU list to pin to, e.g. '1' or '2-3' (default: all allowed)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"{threads_help} (default {default_threads}; with --batching, "
                             "at least its max_batch)")
    parser.set_defaults(server_default_threads=default_threads,
                        batch_waits_in_threads=batch_waits_in_threads)
    parser.add_argument("--max-body-bytes", type=positive_int,
                        default=codec.DEFAULT_LIMITS.max_body_bytes,
                        help="larger requests are refused (HTTP 413, gRPC RESOURCE_EXHAUSTED)")
    parser.add_argument("--max-batch", type=positive_int, default=codec.DEFAULT_LIMITS.max_batch,
                        help="larger batches are refused (HTTP 413, gRPC RESOURCE_EXHAUSTED)")
    parser.add_argument("--batching", type=batching_spec, default=None, metavar="SPEC",
                        help="dynamic batching: max_batch=N,max_wait_ms=M (either may be left "
                             "out: its default); one forward pass serves the requests that "
                             "arrive together (default: off, one pass per request)")
    parser.add_argument("--batch-log-dir", default=None, metavar="DIR",
                        help="with --batching, each worker writes one line per forward pass "
                             "to DIR/batches-PID.log (default: no log)")
    parser.add_argument("--metrics", action="store_true",
                        help="expose Prometheus metrics (requests, errors, latency, model "
                             "time, batch size) on GET /metrics, or on --metrics-port "
                             "(default: off)")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="with --metrics, the port of a separate metrics endpoint "
                             "(gRPC needs one; default: the HTTP servers' own port)")
    parser.add_argument("--log-predictions", type=log_rate, default=0.0, metavar="RATE",
                        help="append this fraction of the requests (input, output, model "
                             "version, time) to --prediction-log-dir (default 0: off)")
    parser.add_argument("--prediction-log-dir", default=None, metavar="DIR",
                        help="where --log-predictions writes: DIR/predictions-PID.sqlite")


def log_rate(text: str) -> float:
    try:
        return Monitoring(log_rate=float(text)).log_rate
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction from 0 to 1 (got {text!r})") from None


def batching_spec(text: str) -> BatchingSpec:
    try:
        return BatchingSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def threads_for(batching: BatchingSpec | None, default_threads: int,
                waits_in_threads: bool = True) -> int:
    """Threads per worker when ``--threads`` is not given. A worker batches only the
    requests it has accepted: a threaded server needs a thread per request waiting in a
    batch, so under batching at least ``max_batch`` (requests of one example each fill
    a batch; more threads would only queue requests behind a full one). A server whose
    event loop holds the waiting requests (``waits_in_threads`` False: FastAPI) keeps
    its default."""
    if batching is None or not waits_in_threads:
        return default_threads
    return max(default_threads, batching.max_batch)


def exit_if_batching(args: argparse.Namespace, why: str) -> None:
    """For a server (or a mode of one) that does not batch: exit 2 with ``why`` when
    ``--batching`` was given, rather than ignore it."""
    if getattr(args, "batching", None) is not None:
        print(f"error: --batching {args.batching}: {why}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def warn_if_exposed(host: str) -> None:
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return
    if host == "localhost":
        return
    print(f"warning: binding {host}: this server is reachable from other machines",
          file=sys.stderr)


@dataclass(frozen=True)
class ServerSetup:
    cpus: list[int]
    workers: int
    #: torch threads per worker: workers x torch threads = CPUs.
    torch_threads: int
    limits: codec.Limits
    #: Threads per worker: ``--threads``, or the server's default (:func:`threads_for`).
    threads: int
    #: ``--batching`` (None: off) and ``--batch-log-dir`` (None: no log).
    batching: BatchingSpec | None = None
    batch_log_dir: str | None = None
    #: ``--metrics`` and ``--log-predictions`` (OFF: neither).
    monitoring: Monitoring = OFF
    metrics_port: int | None = None
    prediction_log_dir: str | None = None

    def banner(self, kind: str, args: argparse.Namespace) -> str:
        batching = f" batching={self.batching}" if self.batching else ""
        monitoring = "" if self.monitoring.off else f" monitoring={self.monitoring.mode}"
        return (f"deploybench {kind}: bundle={label(args.bundle)} bind={args.host}:{args.port} "
                f"cpus={format_cpus(self.cpus)} workers={self.workers} "
                f"threads={self.threads} torch_threads={self.torch_threads}{batching}"
                f"{monitoring}")


def exit_if_port_taken(host: str, port: int) -> None:
    """Exit 1 with a clear message when ``host:port`` cannot be bound, before a server
    that would retry (gunicorn: five times, a second apart) or say it obscurely."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            print(f"error: cannot bind {host}:{port}: {exc.strerror or exc}. Choose another "
                  "--port", file=sys.stderr, flush=True)
            raise SystemExit(1) from None


def prepare_server(args: argparse.Namespace) -> ServerSetup:
    """Everything a server does before it forks workers or imports torch's kernels."""
    die_with_parent()
    # Before the bundle is trained or any worker starts: a log folder no worker could
    # write would otherwise be each worker's traceback at its first request's log.
    monitoring = Monitoring(metrics=bool(getattr(args, "metrics", False)),
                            log_rate=getattr(args, "log_predictions", 0.0) or 0.0)
    log_dir = getattr(args, "prediction_log_dir", None)
    if monitoring.log_rate:
        exit_if_unwritable(log_dir)
    cpus = sorted(args.cpus or os.sched_getaffinity(0))
    workers = args.workers or len(cpus)
    torch_threads = max(1, len(cpus) // workers)
    # Before torch is imported anywhere in this process tree: OpenMP reads these once.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(torch_threads)
    # Train or verify the cached model once, here, not in every worker at once.
    get_bundle(args.bundle).prepare()
    os.sched_setaffinity(0, cpus)  # before workers fork: they inherit it
    warn_if_exposed(args.host)
    limits = codec.Limits(max_body_bytes=args.max_body_bytes, max_batch=args.max_batch)
    batching: BatchingSpec | None = getattr(args, "batching", None)
    threads = args.threads or threads_for(batching, args.server_default_threads,
                                          args.batch_waits_in_threads)
    return ServerSetup(cpus, workers, torch_threads, limits, threads, batching,
                       getattr(args, "batch_log_dir", None), monitoring,
                       getattr(args, "metrics_port", None), log_dir)


def exit_if_unwritable(log_dir: str | None) -> None:
    """``--log-predictions``' folder, made if missing; exit 2 with what to do when there
    is none or this process cannot write in it (its workers could not either)."""
    if not log_dir:
        print("error: --log-predictions needs --prediction-log-dir DIR", file=sys.stderr,
              flush=True)
        raise SystemExit(2)
    try:
        os.makedirs(log_dir, exist_ok=True)
        writable = os.access(log_dir, os.W_OK | os.X_OK)
        why = "permission denied"
    except OSError as exc:
        writable, why = False, exc.strerror or str(exc)
    if not writable:
        print(f"error: --prediction-log-dir {log_dir}: cannot write the prediction log "
              f"there ({why}). Give a folder this user can write", file=sys.stderr,
              flush=True)
        raise SystemExit(2)


def fork_workers(count: int, serve_one: Callable[[], int],
                 on_forked: Callable[[], None] | None = None) -> int:
    """Fork ``count`` workers, each running ``serve_one`` (its return is the exit code),
    and supervise them; returns the exit code of the first worker to exit.

    SIGTERM and SIGINT are forwarded to the workers. Any worker exiting ends the server:
    a half-sized server would measure something else. Call it before anything starts
    threads in this process; ``on_forked`` runs here once every worker is forked (it may
    start one: the gRPC target's metrics endpoint).
    """
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = serve_one()
            finally:
                os._exit(code)
        children.append(pid)
    if on_forked is not None:
        on_forked()

    alive = set(children)

    def forward(signum: int, frame: object) -> None:
        for child in alive:  # only unreaped children: their PIDs cannot have been reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pid, status = os.wait()
    alive.discard(pid)
    code = os.waitstatus_to_exitcode(status)
    forward(signal.SIGTERM, None)
    while alive:
        pid, _ = os.wait()
        alive.discard(pid)
    return code


def set_torch_threads(n: int) -> None:
    """In a worker: torch's intra-op threads to ``n``, inter-op to 1."""
    import torch

    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # only settable before first use
        torch.set_num_interop_threads(1)
