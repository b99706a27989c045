"""Run the Ray Serve target: ``python -m targets.rayserve.server --bundle digits``.

The same entry point backs ``deploybench serve rayserve``. It pins itself to ``--cpus``
first (every Ray process it starts inherits the CPU set), starts a single-node Ray
cluster inside itself (``ray.init``: GCS, raylet and their workers are its descendants,
so stopping it by PID stops them all), starts Serve's HTTP proxy on ``--host:--port``,
deploys ``--workers`` replicas (default one per CPU, one torch thread each), and serves
until SIGTERM or SIGINT, then shuts Serve and Ray down.

Ray's own processes (the GCS, the raylet, the dashboard's minimal API server and agent,
the runtime-env agent, Serve's controller and proxy) run on the same CPUs as the
replicas: that overhead is part of what this target measures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

from targets.entrypoint import ServerSetup, exit_if_port_taken, prepare_server
from targets.entrypoint import add_arguments as add_common_arguments
from targets.monitor import exit_if_monitoring

#: Requests a replica takes at once: Serve's own default ``max_ongoing_requests`` (5).
#: Beyond it, requests wait in the proxy for a free replica.
DEFAULT_THREADS = 5
#: Ray's plasma object store: requests and answers here are kilobytes, so the floor Ray
#: accepts (75 MiB) and a margin, not its default of 30% of the machine's memory.
OBJECT_STORE_BYTES = 100 * 2**20
#: Serve's logging for its proxy, controller and replicas: warnings and errors only, no
#: access log. By default each request is logged by the proxy and the replica, and the
#: lines are tailed, shipped through the GCS and printed by this process: a served
#: request's CPU time several times over on one CPU.
QUIET = {"log_level": "WARNING", "enable_access_log": False}
#: A clear message when Ray is not installed (it is an optional extra).
INSTALL_HINT = "pip install -e '.[ray]'"


def ray_installed() -> bool:
    """Ray Serve can be imported (looked up without importing it: ~1 s)."""
    return importlib.util.find_spec("ray") is not None \
        and importlib.util.find_spec("ray.serve") is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # --batching and --batch-log-dir are the common ones: @serve.batch in every replica.
    add_common_arguments(parser, default_port=8000, default_threads=DEFAULT_THREADS,
                         threads_help="requests a replica takes at once (Serve's "
                                      "max_ongoing_requests)")


def _replica_options(setup: ServerSetup, args: argparse.Namespace) -> dict[str, Any]:
    """Serve's deployment options: the replicas share the CPUs Ray was given."""
    # --threads, or its default: under --batching at least a full batch (a replica batches
    # only the requests it has taken).
    return {"num_replicas": setup.workers, "max_ongoing_requests": setup.threads,
            "ray_actor_options": {"num_cpus": len(setup.cpus) / setup.workers}}


class StopSignal:
    """SIGTERM and SIGINT, noted rather than acted on at once: one that arrives while the
    cluster is still starting lets the start finish, then shuts down as usual (Ray's own
    handler, which ``ray.init`` installs, would exit in the middle of it)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.install()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._note)
        signal.signal(signal.SIGINT, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self._stop.set()

    def wait(self) -> None:
        self._stop.wait()


def serve(args: argparse.Namespace) -> None:
    exit_if_monitoring(args, "not supported by the rayserve target yet: its replicas are "
                             "processes Ray starts, whose deploybench metrics and prediction "
                             "log are not wired (Ray's own metrics are on its dashboard "
                             "agent's port); run it without them")
    exit_if_port_taken(args.host, args.port)
    if not ray_installed():
        print(f"error: the rayserve target needs Ray Serve, which is not installed. Run "
              f"`{INSTALL_HINT}`", file=sys.stderr, flush=True)
        raise SystemExit(1)
    setup = prepare_server(args)  # pinned before Ray is imported or starts anything
    import ray
    from ray import serve as ray_serve

    # The deployment imports ray at its top: only once Ray is known to be here.
    from targets.rayserve.app import ReplicaConfig, application  # noqa: PLC0415

    print(setup.banner("rayserve", args), file=sys.stderr, flush=True)
    # Ray's session folder holds its Unix sockets, whose paths may not pass 107 bytes:
    # a short folder of our own under /tmp, removed after.
    temp_dir = tempfile.mkdtemp(prefix="dbray-", dir="/tmp")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    stop = StopSignal()
    try:
        # address="local": always a cluster of its own, even where RAY_ADDRESS names one
        # (a KubeRay pod): the target is this server and what it starts.
        ray.init(address="local", num_cpus=len(setup.cpus), include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, _temp_dir=temp_dir,
                 configure_logging=False)
        stop.install()  # again: ray.init replaced it with its own
        ray_serve.start(http_options={"host": args.host, "port": args.port},
                        logging_config=QUIET)
        config = ReplicaConfig(args.bundle, setup.limits, setup.torch_threads,
                               args.batching, args.batch_log_dir)
        ray_serve.run(application(config, _replica_options(setup, args)), route_prefix="/",
                      logging_config=QUIET)
        print(f"deploybench rayserve: serving on http://{args.host}:{args.port}",
              file=sys.stderr, flush=True)
        stop.wait()
    finally:
        try:
            with contextlib.suppress(Exception):
                ray_serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m targets.rayserve.server",
                                     description=__doc__)
    add_arguments(parser)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
