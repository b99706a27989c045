"""Run the FastAPI target under uvicorn: ``python -m targets.fastapi.server --bundle digits``.

The same entry point backs ``deploybench serve fastapi`` and the container image. It pins
itself to ``--cpus``, binds its listening socket once, and forks one uvicorn worker per CPU
(:func:`targets.entrypoint.fork_workers`: any worker dying ends the server, and every PID
is ours), each with one torch thread, uvloop and httptools, no access log, and keep-alive
connections held 75 s as the Flask target's gunicorn holds them.

Where the model runs (``--pool``, ``--threads``): never on the event loop, which would
stop answering anything else for the length of a prediction. Measured with
``deploybench run --targets fastapi,flask --bundle digits --scenario quick`` (see
:data:`DEFAULT_POOL`).
"""

from __future__ import annotations

import argparse
import os
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
from targets.runtimes.process import signal_when_parent_dies

#: Beside flask's 8000, so docker-compose can run both with host networking.
DEFAULT_PORT = 8001
#: Where the model runs (targets.fastapi.app.POOLS) and in how many threads per worker.
#: MEASURED: see docs/methodology.md, *Performance*.
DEFAULT_POOL = "executor"
DEFAULT_THREADS = 1
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
                         threads_help="threads that run the model in each worker")
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


def _serve_one(args: argparse.Namespace, setup: ServerSetup, sock: socket.socket) -> int:
    """One worker: the app on uvicorn, accepting on the shared socket until SIGTERM."""
    signal_when_parent_dies()  # a SIGKILLed supervisor leaves no worker behind
    set_torch_threads(setup.torch_threads)
    import uvicorn

    from targets.fastapi.app import create_app  # noqa: PLC0415

    app = create_app(args.bundle, setup.limits, threads=args.threads, pool=args.pool)
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="info", server_header=False,
                            timeout_keep_alive=KEEPALIVE_S,
                            timeout_graceful_shutdown=GRACEFUL_S)
    print(f"worker {os.getpid()} serving", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def serve(args: argparse.Namespace) -> int:
    exit_if_port_taken(args.host, args.port)
    setup = prepare_server(args)
    sock = bind(args.host, args.port)
    print(setup.banner("fastapi", args) + f" pool={args.pool}", file=sys.stderr, flush=True)
    return fork_workers(setup.workers, lambda: _serve_one(args, setup, sock))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.fastapi.server",
                                     description=__doc__)
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
