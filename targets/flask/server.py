"""Run the Flask target under gunicorn: ``python -m targets.flask.server --bundle digits``.

The same entry point backs ``deploybench serve flask`` and the container image. It pins
itself to ``--cpus`` before gunicorn forks, so every worker inherits the CPU set; it runs
one worker per CPU with one torch thread each (so workers x torch threads = CPUs), and
gthread workers keep connections alive (a connection per request cost the load generator
~20% in measurements here).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
from collections.abc import Sequence
from typing import Any

from targets import codec
from targets.bundle import get_bundle
from targets.cpuset import format_cpus, parse_cpus
from targets.process import die_with_parent

#: Threads per gthread worker. The model is CPU-bound and each worker has one CPU's worth
#: of torch threads, so more threads only interleave requests: measured here with wrk on
#: `digits`, 1 and 4 threads gave the same ~2.0k req/s on one core, but p99 at 16
#: connections was 8 ms with 1 thread against 30 ms with 4. Keep-alive connections wait
#: in the worker's poller either way.
DEFAULT_THREADS = 1
#: Idle keep-alive, as nginx's default: longer than any pause between requests of a stage.
KEEPALIVE_S = 75


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="digits", help="bundle to serve (default: digits)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: not reachable from outside)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--cpus", type=parse_cpus, default=None,
                        help="CPU list to pin to, e.g. '1' or '2-3' (default: all allowed)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="gunicorn worker processes (default: one per CPU)")
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                        help=f"threads per worker (default {DEFAULT_THREADS})")
    parser.add_argument("--max-body-bytes", type=positive_int,
                        default=codec.DEFAULT_LIMITS.max_body_bytes,
                        help="larger request bodies get 413")
    parser.add_argument("--max-batch", type=positive_int, default=codec.DEFAULT_LIMITS.max_batch,
                        help="larger batches get 413")


def warn_if_exposed(host: str) -> None:
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return
    if host == "localhost":
        return
    print(f"warning: binding {host}: this server is reachable from other machines",
          file=sys.stderr)


def serve(args: argparse.Namespace) -> None:
    die_with_parent()
    # Train or verify the cached model once, here, before workers fork and each load it.
    get_bundle(args.bundle).prepare()
    cpus = sorted(args.cpus or os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus)  # before gunicorn forks: workers inherit it
    workers = args.workers or len(cpus)
    torch_threads = max(1, len(cpus) // workers)
    # Before torch is imported (in the workers): OpenMP reads these at start-up.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(torch_threads)
    warn_if_exposed(args.host)
    limits = codec.Limits(max_body_bytes=args.max_body_bytes, max_batch=args.max_batch)

    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings: dict[str, Any] = {
                "bind": f"{args.host}:{args.port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": args.threads,
                "keepalive": KEEPALIVE_S,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "info",
                "graceful_timeout": 5,
                "proc_name": f"deploybench-flask-{args.bundle}",
                "post_fork": _post_fork,
            }
            # gunicorn >= 24 opens a control socket at one fixed path per user: two
            # servers would fight over it, and we manage processes by PID anyway.
            if "control_socket_disable" in self.cfg.settings:
                settings["control_socket_disable"] = True
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from targets.flask.app import create_app

            return create_app(args.bundle, limits)

    def _post_fork(server: Any, worker: Any) -> None:
        import torch

        torch.set_num_threads(torch_threads)
        with contextlib.suppress(RuntimeError):  # only settable before first use
            torch.set_num_interop_threads(1)

    print(f"deploybench flask: bundle={args.bundle} bind={args.host}:{args.port} "
          f"cpus={format_cpus(cpus)} workers={workers} threads={args.threads} "
          f"torch_threads={torch_threads}", file=sys.stderr, flush=True)
    Application().run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m targets.flask.server", description=__doc__)
    add_arguments(parser)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
