"""Run the Lambda emulator: ``python -m targets.awslambda.server --bundle digits --port 9000``.

One process (asyncio) serves the Invoke API, the Function URL front door and admin on
``--port``, and a Runtime API per execution environment on its own loopback port. Each
environment is ``python -m awslambdaric targets.awslambda.handler.handler``, started on
demand up to ``--concurrency``; the emulator and every environment run pinned to
``--cpus`` (all environments share those CPUs: the deployment gets the same CPU budget
as the other targets), with as many torch threads as the vCPUs AWS shows the memory size
where its CPU share is enforced, else one.

Each environment is shaped as AWS shapes it where the kernel allows (``--sandbox auto``,
:mod:`.sandbox`): a cgroup CPU quota of memory/1,769 CPUs, a memory limit of the memory
size, and frozen while idle (``--freeze``). Where it cannot, a warning says so and the
stats' ``sandbox`` says why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from targets.awslambda import httpserver
from targets.awslambda.environment import HANDLER, FunctionConfig
from targets.awslambda.frontdoor import MAX_PAYLOAD_BYTES, METRICS_PATHS, FrontDoor
from targets.awslambda.function import LambdaFunction
from targets.awslambda.httpserver import Request, Response
from targets.awslambda.metrics import FunctionMetrics
from targets.awslambda.predictions import LOG_DIR_ENV, LOG_RATE_ENV
from targets.awslambda.sandbox import FREEZE_AFTER_S, Shaper
from targets.awslambda.shape import check_memory_mb
from targets.entrypoint import ServerSetup, exit_if_batching, positive_int, prepare_server
from targets.entrypoint import add_arguments as add_common_arguments

#: 1,769 MB is the memory size at which Lambda gives a function one full vCPU.
DEFAULT_MEMORY_MB = 1769
#: AWS's default function timeout is 3 s; a benchmark on a shared machine gets more room.
DEFAULT_TIMEOUT_S = 30.0
#: Lambda caps the Init phase at 10 s.
DEFAULT_INIT_TIMEOUT_S = 10.0
#: Lambda does not publish how long idle environments live; LocalStack uses 10 minutes.
DEFAULT_KEEPALIVE_S = 600.0
#: Environments at once. AWS's account default is 1,000; each environment here is a
#: Python process with torch (~200 MB for digits), so a laptop-sized default.
DEFAULT_CONCURRENCY = 10


def memory_size(text: str) -> int:
    """``--memory-mb``: a whole number of MB that AWS allows."""
    try:
        return check_memory_mb(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def handler_name(text: str) -> str:
    """``--handler``: ``MODULE.FUNCTION``, as Lambda's handler setting."""
    module, dot, function = text.rpartition(".")
    if not dot or not module or not function.isidentifier():
        raise argparse.ArgumentTypeError(f"a handler is MODULE.FUNCTION (got {text!r})")
    return text


def code_dir(text: str) -> Path:
    path = Path(text).resolve()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {text}")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_port=9000, default_threads=1,
                         threads_help="unused (one event per environment)")
    parser.add_argument("--function-name", default="deploybench",
                        help="function name in URLs and ARNs (default deploybench; the "
                             "Invoke API also accepts 'function', as AWS's emulator does)")
    parser.add_argument("--memory-mb", type=memory_size, default=DEFAULT_MEMORY_MB,
                        help=f"memory size, 128 to 10240: each environment's memory limit "
                             f"and CPU share (memory/1769 CPUs), REPORT lines and cost "
                             f"(default {DEFAULT_MEMORY_MB}: one vCPU)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"function timeout in seconds (default {DEFAULT_TIMEOUT_S:g}; "
                             "AWS's default is 3)")
    parser.add_argument("--init-timeout", type=float, default=DEFAULT_INIT_TIMEOUT_S,
                        help=f"Init phase limit in seconds (default {DEFAULT_INIT_TIMEOUT_S:g})")
    parser.add_argument("--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY,
                        help="most environments at once; more requests get 429 "
                             f"(default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--keepalive", type=float, default=DEFAULT_KEEPALIVE_S,
                        help="seconds an idle environment lives before it is reaped "
                             f"(default {DEFAULT_KEEPALIVE_S:g})")
    parser.add_argument("--sandbox", choices=("auto", "off"), default="auto",
                        help="auto: enforce each environment's CPU share and memory limit "
                             "with cgroups where this machine allows; off: no cgroups, "
                             "every environment at the full speed of --cpus, memory "
                             "unlimited (default auto)")
    parser.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=True,
                        help="freeze an idle environment (cgroup freezer, else SIGSTOP) "
                             "and thaw it for its next event, as Lambda does (default on)")
    parser.add_argument("--freeze-after-ms", type=float, default=FREEZE_AFTER_S * 1000,
                        help="milliseconds an environment stays idle before it is frozen "
                             f"(default {FREEZE_AFTER_S * 1000:g}; 0: at once, as AWS does, "
                             "at ~0.3 ms of the target CPU per invocation for the freeze "
                             "and thaw)")
    parser.add_argument("--handler", type=handler_name, default=HANDLER,
                        help=f"the function's handler, MODULE.FUNCTION (default {HANDLER})")
    parser.add_argument("--code-dir", type=code_dir, default=None,
                        help="directory holding the handler's module (LAMBDA_TASK_ROOT, "
                             "first on the PYTHONPATH; default: deploybench's source)")
    parser.add_argument("--records", type=Path, default=None,
                        help="append one JSON line per invocation (the REPORT fields) here")
    parser.add_argument("--cloudwatch-file", type=Path, default=None, metavar="PATH",
                        help="append the per-minute statistics CloudWatch keeps for the "
                             "function (Invocations, Errors, Throttles, Duration, "
                             "ConcurrentExecutions) here, one JSON line per metric per "
                             "minute, as each minute ends and at exit (default: none)")


def monitoring_env(setup: ServerSetup) -> dict[str, str]:
    """What tells every environment's handler to log predictions (handler.py reads it)."""
    if not setup.monitoring.log_rate or setup.prediction_log_dir is None:
        return {}
    return {LOG_RATE_ENV: repr(setup.monitoring.log_rate),
            LOG_DIR_ENV: str(Path(setup.prediction_log_dir).resolve())}


async def _serve(args: argparse.Namespace, setup: ServerSetup) -> int:
    limits = setup.limits
    shaper = Shaper(args.memory_mb, len(os.sched_getaffinity(0)), args.sandbox, args.freeze)
    # Init's limit is on its CPU time; the wall-clock cap (for an Init that hangs) stretches
    # by the quota, which slows a 128 MB function's Init 14-fold by the clock.
    quota = shaper.enforced_share
    config = FunctionConfig(
        name=args.function_name, memory_mb=args.memory_mb,
        timeout_s=args.timeout, init_timeout_s=args.init_timeout,
        extra_env={"DEPLOYBENCH_BUNDLE": args.bundle,
                   "DEPLOYBENCH_MAX_BODY_BYTES": str(limits.max_body_bytes),
                   "DEPLOYBENCH_MAX_BATCH": str(limits.max_batch), **monitoring_env(setup)},
        handler=args.handler, code_dir=args.code_dir, torch_threads=shaper.torch_threads,
        freeze_after_s=max(0.0, args.freeze_after_ms / 1000),
        init_wall_factor=FunctionConfig.init_wall_factor / min(1.0, quota or 1.0),
    )

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    sandbox = shaper.describe()
    if not sandbox["enforced"]:
        log(f"warning: Lambda environments run unthrottled (every one at the full speed of "
            f"the target CPUs, memory unlimited): {sandbox['reason']}")
    metrics = None
    if setup.monitoring.metrics or args.cloudwatch_file is not None:
        metrics = FunctionMetrics(config.name, args.cloudwatch_file)
    function = LambdaFunction(config, args.concurrency, args.keepalive, args.records, log,
                              shaper, metrics)
    front = FrontDoor(function, metrics if setup.monitoring.metrics else None)
    servers = await _listen(args, setup, front)
    if servers is None:
        shaper.close()
        if metrics is not None:
            metrics.close()
        return 1
    function.start()
    flusher = asyncio.create_task(metrics.flush_periods()) if metrics is not None else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log(f"lambda emulator: function {config.name} ({config.memory_mb} MB, timeout "
        f"{config.timeout_s:g} s, concurrency {args.concurrency}, keep-alive "
        f"{args.keepalive:g} s; CPU share {sandbox['cpu_share_effective']:g} by "
        f"{sandbox['cpu']}, memory limit by {sandbox['memory']}, freeze by "
        f"{sandbox['freeze']}) at http://{args.host}:{args.port}")
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        await function.close()
        if flusher is not None:
            flusher.cancel()
        if metrics is not None:
            metrics.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
    return 0


async def _listen(args: argparse.Namespace, setup: ServerSetup, front: FrontDoor
                  ) -> list[asyncio.Server] | None:
    """The public port (and ``--metrics-port``'s, if any); None: one is taken."""
    servers: list[asyncio.Server] = []
    port = args.port
    try:
        # Past Lambda's 6 MB the front door answers as AWS does (413 RequestTooLarge);
        # the server itself only refuses what is absurd.
        servers.append(await httpserver.start(front.route, args.host, args.port,
                                              8 * MAX_PAYLOAD_BYTES))
        if setup.monitoring.metrics and setup.metrics_port is not None:
            port = setup.metrics_port
            servers.append(await httpserver.start(_metrics_only(front), args.host, port,
                                                  1024))
    except OSError as exc:
        which = "--port" if port == args.port else "--metrics-port"
        print(f"error: cannot bind {args.host}:{port}: {exc.strerror}. Choose another "
              f"{which}", file=sys.stderr, flush=True)
        for server in servers:
            server.close()
        return None
    return servers


def _metrics_only(front: FrontDoor) -> httpserver.Handler:
    """``--metrics-port``'s handler: GET /metrics, nothing else."""
    async def route(request: Request) -> Response:
        if request.path in METRICS_PATHS and request.method in ("GET", "HEAD"):
            return front.metrics_response()
        return Response(404, b"only GET /metrics here")
    return route


def serve(args: argparse.Namespace) -> int:
    exit_if_batching(args, "a Lambda environment serves one event at a time, as AWS's do")
    args.workers = 1  # one emulator process; environments come and go on demand
    setup = prepare_server(args)
    print(setup.banner("lambda", args), file=sys.stderr, flush=True)
    return asyncio.run(_serve(args, setup))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.awslambda.server",
                                     description=__doc__)
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
