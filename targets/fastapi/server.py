"""Run the FastAPI target under uvicorn: ``python -m targets.fastapi.server --bundle digits``.

The same entry point backs ``deploybench serve fastapi`` and the container image. It pins
itself to ``--cpus``, binds its listening socket once, and forks one uvicorn worker per CPU
(:func:`targets.entrypoint.fork_workers`: any worker dying ends the server, and every PID
is ours), each with one torch thread, uvloop and httptools, no access log, and keep-alive
connections held 75 s as the Flask target's gunicorn holds them.

Where the model runs (``--pool``, ``--threads``): never on the event loop, which would
stop answering anything else for the length of a prediction. The default, a
ThreadPoolExecutor of 2 threads per worker, was chosen by measurement (see
:data:`DEFAULT_POOL`, and docs/methodology.md, *The FastAPI target: where its model runs*).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Sequence

from targets.entrypoint import (
    ServerSetup,
    exit_if_port_taken,
    fork_workers,
    prepare_server,
    set_torch_threads,
)
from targets.entrypoint import add_arguments as add_common_arguments
from targets.monitor import multiprocess_dir
from targets.runtimes.process import signal_when_parent_dies

#: Beside flask's 8000, so docker-compose can run both with host networking.
DEFAULT_PORT = 8001
#: Where the model runs, and in how many threads per worker. Measured with ``deploybench
#: run --targets fastapi,flask --bundle digits`` (quick's 4- and 16-user stages, one CPU,
#: 2026-12-02, up to four runs of each on a shared 2-core machine; medians of req/s at 16
#: users and p99 at 4 users): an executor of 2 threads 3,671 req/s and 5.8 ms; of 1 thread
#: 3,632 req/s and 8.1 ms; anyio's pool of 40 1,619 req/s and 8.9 ms; a plain ``def``
#: endpoint (anyio's 40; two runs) 2,440 req/s and 6.1 ms. Flask's medians in the same
#: runs: 1,455 to 2,810 req/s. The machine drifted more between runs than 1 and 2 threads differ; 2
#: had the lower p99 in 3 of 4 runs. The table: docs/methodology.md.
DEFAULT_POOL = "executor"
DEFAULT_THREADS = 2
#: "executor": this worker's ThreadPoolExecutor (``loop.run_in_executor``); "anyio":
#: anyio's pool (``run_in_threadpool``); "sync": a plain ``def`` endpoint, which FastAPI
#: runs in anyio's pool. --threads sizes each (anyio's limiter for the last two).
POOLS = ("executor", "anyio", "sync")
#: Idle keep-alive, as nginx's default and the Flask target's: longer than any pause
#: between requests of a stage.
KEEPALIVE_S = 75
#: As the Flask target's gunicorn graceful_timeout: in-flight requests get this long.
GRACEFUL_S = 5
#: The listening socket's backlog (uvicorn's default).
BACKLOG = 2048


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_port=DEFAULT_PORT, default_threads=DEFAULT_THREADS,
                         threads_help="threads that run the model in each worker",
                         batch_waits_in_threads=False)  # the event loop holds them
    parser.add_argument("--pool", choices=POOLS, default=DEFAULT_POOL,
                        help="where the model runs, off the event loop: executor (a "
                             "ThreadPoolExecutor per worker), anyio (anyio's pool, "
                             "run_in_threadpool) or sync (a plain def endpoint) "
                             f"(default {DEFAULT_POOL})")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound once before the workers fork: they all accept on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _serve_one(args: argparse.Namespace, setup: ServerSetup, sock: socket.socket,
               supervisor: int) -> int:
    """One worker: the app on uvicorn, accepting on the shared socket until SIGTERM."""
    signal_when_parent_dies()  # a SIGKILLed supervisor leaves no worker behind...
    if os.getppid() != supervisor:  # ...nor one whose supervisor died before it asked
        return 1
    set_torch_threads(setup.torch_threads)
    import uvicorn

    from targets.fastapi.app import create_app  # noqa: PLC0415

    app = create_app(args.bundle, setup.limits, threads=setup.threads, pool=args.pool,
                     batching=setup.batching, batch_log_dir=setup.batch_log_dir,
                     monitoring=setup.monitoring,
                     prediction_log_dir=setup.prediction_log_dir)
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="info", server_header=False,
                            timeout_keep_alive=KEEPALIVE_S,
                            timeout_graceful_shutdown=GRACEFUL_S)
    print(f"worker {os.getpid()} serving", file=sys.stderr, flush=True)
    # uvicorn raises a SIGTERM it caught again once it has shut down gracefully; with the
    # default action that would kill the worker (exit 241 for a clean stop): a handler
    # that does nothing lets it return.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1  # its start-up (the lifespan) failed


def serve(args: argparse.Namespace) -> int:
    exit_if_port_taken(args.host, args.port)
    setup = prepare_server(args)
    multiprocess_dir(setup.monitoring)  # before any worker imports prometheus_client
    sock = bind(args.host, args.port)
    print(setup.banner("fastapi", args) + f" pool={args.pool}", file=sys.stderr, flush=True)
    supervisor = os.getpid()
    return fork_workers(setup.workers, lambda: _serve_one(args, setup, sock, supervisor))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.fastapi.server",
                                     description=__doc__)
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
