"""The ``deploybench`` command line: its parser and :func:`main`. The commands live in
:mod:`harness.run_command` (run; its options in :mod:`harness.runparser`) and
:mod:`harness.commands` (the others), what users type is parsed by :mod:`harness.options`.

Only :func:`main` turns the project's exceptions into ``error: ...`` messages: exit code
1 for user errors, 2 for usage errors (argparse's own), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.commands import (
    EXIT_REGRESSION,
    cmd_bundles,
    cmd_calibrate,
    cmd_compare,
    cmd_init_bundle,
    cmd_loadgen_worker,
    cmd_report,
    cmd_scenarios,
    cmd_serve,
    cmd_upgrade,
)
from harness.drift import add_drift_parser
from harness.errors import UserError
from harness.options import parse_protocols, parse_slo, parse_volume
from harness.runparser import add_run_parser
from harness.suites.command import add_suite_parser
from harness.suites.history import add_history_parser
from reports.compare import parse_fail_on
from reports.pricing import PricesError
from reports.schema import ResultFileError
from reports.suiteschema import SuiteError
from scenarios.catalogue import ScenarioError
from targets.awslambda.server import add_arguments as add_lambda_arguments
from targets.errors import TargetError
from targets.fastapi.server import add_arguments as add_fastapi_arguments
from targets.flask.server import add_arguments as add_flask_arguments
from targets.grpc.server import add_arguments as add_grpc_arguments
from targets.rayserve.server import add_arguments as add_rayserve_arguments
from targets.runtimes.cpuset import parse_cpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploybench",
        description="Deploy one PyTorch model several ways, load each the same way, compare.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    add_run_parser(sub)

    cal = sub.add_parser("calibrate", help="measure the harness's own ceiling per protocol "
                                           "against null targets (no model)")
    cal.add_argument("--protocols", type=parse_protocols, default=("http", "grpc", "lambda",
                                                              "inprocess"),
                     help="comma-separated: http, grpc, lambda, inprocess (default: all)")
    cal.add_argument("--scenario", default="calibrate",
                     help="scenario name or YAML path (default: calibrate)")
    cal.add_argument("--out", type=Path, default=None,
                     help="result folder (default results/calibration-TIMESTAMP)")
    cal.add_argument("--save", type=Path, default=None,
                     help="where to keep the ceilings (default: the cache folder's "
                          "calibration.json, which `run` reads)")
    cal.add_argument("--target-cpus", type=parse_cpus, default=None,
                     help="CPUs for the null targets (default: as `run`)")
    cal.add_argument("--loadgen-cpus", type=parse_cpus, default=None,
                     help="CPUs for the load generator (default: as `run`)")
    cal.set_defaults(func=cmd_calibrate)

    report = sub.add_parser("report", help="re-render a run's reports from its run.json, "
                                           "optionally for another objective or volume")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--slo", type=parse_slo, default=None,
                        help="decide for this objective instead of the run's, e.g. p99=20ms")
    report.add_argument("--monthly-requests", type=parse_volume, default=None,
                        help="decide costs for this many requests a month, e.g. 50M")
    report.add_argument("--prices", type=Path, default=None,
                        help="YAML/JSON prices file replacing the run's (see --prices of run)")
    report.set_defaults(func=cmd_report)

    upgrade = sub.add_parser("upgrade", help="rewrite an older run.json at this schema "
                                             "version (the original is kept beside it)")
    upgrade.add_argument("run_dir", type=Path)
    upgrade.set_defaults(func=cmd_upgrade)

    cmp = sub.add_parser(
        "compare", help="compare run B against run A: per target and load, rps, p50, p99 "
                        "and error rate, with a 95%% interval; a CI gate with --fail-on",
        description="Match the stages of two runs per target by load (users, offered rate, "
                    "or share of capacity) and print B's change against A with its 95% "
                    "confidence half-width. Each side's uncertainty is the standard error "
                    "over its trials (--trials; the value is then their mean) or else over "
                    "the stage's kept measurement windows; A and B are combined by error "
                    "propagation and Student's t (Welch-Satterthwaite degrees of freedom). "
                    "'± ?' = unknown (one window, no per-window p99, or the error rate of one "
                    "trial). A change is significant when its interval excludes 0.")
    cmp.add_argument("run_a", type=Path, help="the baseline: a run folder or its run.json")
    cmp.add_argument("run_b", type=Path, help="the run to judge against it")
    cmp.add_argument("--fail-on", action="append", type=parse_fail_on, metavar="SPEC",
                     help=f"exit {EXIT_REGRESSION} when a change is beyond SPEC and "
                          "significant (with unknown uncertainty, the point change decides), "
                          "or a target failed in B but ran in A: p50:+N%%, p99:+N%% (a rise), "
                          "rps:-N%% (a fall), errors:+N%% (percentage points; errors:+0 = any "
                          "rise); repeatable or comma-separated")
    cmp.add_argument("--targets", default=None,
                     help="comma-separated targets to compare (default: all)")
    cmp.add_argument("--json", type=Path, default=None, metavar="FILE",
                     help="also write the comparison as JSON (for CI tooling)")
    cmp.set_defaults(func=cmd_compare)

    serve = sub.add_parser("serve", help="run one target standalone (a container entry point)")
    serve_sub = serve.add_subparsers(dest="target", required=True)
    flask = serve_sub.add_parser("flask", help="the Flask app under gunicorn")
    add_flask_arguments(flask)
    flask.set_defaults(func=cmd_serve)
    fastapi = serve_sub.add_parser("fastapi", help="the FastAPI app under uvicorn")
    add_fastapi_arguments(fastapi)
    fastapi.set_defaults(func=cmd_serve)
    grpc = serve_sub.add_parser("grpc", help="the gRPC server (health, reflection)")
    add_grpc_arguments(grpc)
    grpc.set_defaults(func=cmd_serve)
    aws = serve_sub.add_parser("lambda", help="the Lambda emulator (Invoke API, Function URL)")
    add_lambda_arguments(aws)
    aws.set_defaults(func=cmd_serve)
    ray = serve_sub.add_parser("rayserve", help="a Ray Serve deployment on a local Ray "
                                                "cluster (needs the 'ray' extra)")
    add_rayserve_arguments(ray)
    ray.set_defaults(func=cmd_serve)

    worker = sub.add_parser(
        "loadgen-worker",
        help="a load-generator worker for `run --loadgen-remote-workers` on another machine")
    worker.add_argument("--master", required=True, metavar="HOST:PORT",
                        help="the run's --loadgen-master address")
    worker.add_argument("--cpus", type=parse_cpus, default=None,
                        help="CPUs to pin to, e.g. 0-3 (default: all allowed)")
    worker.set_defaults(func=cmd_loadgen_worker)

    scen = sub.add_parser("scenarios", help="list the built-in scenarios")
    scen.set_defaults(func=cmd_scenarios)

    init = sub.add_parser("init-bundle",
                          help="write NAME.py, a commented bundle module to start from")
    init.add_argument("name", help="the bundle's name (a Python identifier)")
    init.add_argument("--dir", type=Path, default=Path("."),
                      help="folder to write it in (default: here)")
    init.set_defaults(func=cmd_init_bundle)

    add_drift_parser(sub)
    add_suite_parser(sub)
    add_history_parser(sub)

    bundles = sub.add_parser("bundles", help="list the built-in bundles")
    bundles.add_argument("--time", action="store_true",
                         help="load each and time a batch-1 inference on one core")
    bundles.set_defaults(func=cmd_bundles)
    return parser


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so every ``with``/``finally`` stops what it
    started (servers, the load generator) and the run is written as partial."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> None:
    # A second signal while everything is being stopped exits at once: whatever the run
    # started dies with it (PR_SET_PDEATHSIG), and its run.json stays "running".
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _exit_now)
    raise Interrupted(signum)


def _exit_now(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGINT raises KeyboardInterrupt already; TERM and HUP do the same, except where
    # they are ignored (nohup): then they stay ignored.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM,
                                                        signal.SIGHUP)}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, _raise_interrupted)
    try:
        code: int = args.func(args)
    except (UserError, TargetError, ScenarioError, ResultFileError, PricesError,
            SuiteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        done = "everything it started was stopped"
        if args.command == "run":
            done += "; results measured so far are in run.json (status: partial)"
        print(f"interrupted ({signal.Signals(signum).name}): {done}", file=sys.stderr)
        return 128 + signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


if __name__ == "__main__":
    sys.exit(main())
