"""Run the Flask target under gunicorn: ``python -m targets.flask.server --bundle digits``.

The same entry point backs ``deploybench serve flask`` and the container image. It pins
itself to ``--cpus`` before gunicorn forks, so every worker inherits the CPU set; it runs
one worker per CPU with one torch thread each (so workers x torch threads = CPUs), and
gthread workers keep connections alive (a connection per request cost the load generator
~20% in measurements here).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from targets.bundles.user import label
from targets.entrypoint import add_arguments as add_common_arguments
from targets.entrypoint import (
    exit_if_batching,
    exit_if_port_taken,
    prepare_server,
    set_torch_threads,
)
from targets.monitor import mark_dead, multiprocess_dir

#: Threads per gthread worker (under --batching, at least max_batch: see
#: targets.entrypoint.threads_for). The model is CPU-bound and each worker has one CPU's worth
#: of torch threads, so more threads only interleave requests: measured on `digits` with
#: wrk -c16 (docs/methodology.md, *Performance*), 4 threads gave a few percent more
#: throughput than 1 but p99 ~50 ms against 25-40 ms. Keep-alive connections wait in the
#: worker's poller either way; ``--flask-threads 4`` is there for throughput.
DEFAULT_THREADS = 1
#: Idle keep-alive, as nginx's default: longer than any pause between requests of a stage.
KEEPALIVE_S = 75


WORKER_CLASSES = ("gthread", "gevent", "sync")
DEFAULT_WORKER_CLASS = "gthread"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_port=8000, default_threads=DEFAULT_THREADS,
                         threads_help="threads per gunicorn worker (gthread only)")
    parser.add_argument("--worker-class", choices=WORKER_CLASSES, default=DEFAULT_WORKER_CLASS,
                        help=f"gunicorn's worker class (default {DEFAULT_WORKER_CLASS})")


def serve(args: argparse.Namespace) -> None:
    if args.worker_class != "gthread":
        # sync: one request at a time per worker, nothing to batch; gevent: the batcher's
        # model thread would be a greenlet, and the forward pass would block the hub.
        exit_if_batching(args, f"gunicorn's {args.worker_class} worker cannot batch; use "
                               "--worker-class gthread")
    exit_if_port_taken(args.host, args.port)
    setup = prepare_server(args)
    # Before gunicorn forks, before any worker imports prometheus_client.
    metrics_dir = multiprocess_dir(setup.monitoring)
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings: dict[str, Any] = {
                "bind": f"{args.host}:{args.port}",
                "workers": setup.workers,
                "worker_class": args.worker_class,
                "threads": setup.threads,
                "keepalive": KEEPALIVE_S,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "info",
                "graceful_timeout": 5,
                "proc_name": f"deploybench-flask-{label(args.bundle)}",
                "post_fork": lambda server, worker: set_torch_threads(setup.torch_threads),
            }
            if metrics_dir is not None:  # an exited worker's live gauges stop counting
                settings["child_exit"] = lambda server, worker: mark_dead(worker.pid)
            # gunicorn >= 24 opens a control socket at one fixed path per user: two
            # servers would fight over it, and we manage processes by PID anyway.
            if "control_socket_disable" in self.cfg.settings:
                settings["control_socket_disable"] = True
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Flask loads in each worker (after a gevent worker class has patched it).
            from targets.flask.app import create_app  # noqa: PLC0415

            # In the worker, after the fork: the batcher's thread is the worker's own.
            return create_app(args.bundle, setup.limits, setup.batching, setup.batch_log_dir,
                              setup.monitoring, setup.prediction_log_dir)

    print(setup.banner("flask", args), file=sys.stderr, flush=True)
    Application().run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m targets.flask.server", description=__doc__)
    add_arguments(parser)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
