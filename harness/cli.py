"""The ``deploybench`` command line: its parser and :func:`main`. The commands live in
:mod:`harness.run_command` (run) and :mod:`harness.commands` (the others), what users type
is parsed by :mod:`harness.options`.

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
from harness.loadgen.swarm.messages import DEFAULT_MASTER_PORT
from harness.monitoring import parse_log_rate, parse_modes
from harness.options import (
    non_negative_float,
    parse_batching,
    parse_encodings,
    parse_endpoint_option,
    parse_memory_sizes,
    parse_protocols,
    parse_slo,
    parse_targets,
    parse_volume,
)
from harness.run_command import EXIT_INVALID, cmd_run
from harness.runner import RUNNABLE, TARGETS
from harness.suites.command import add_suite_parser
from harness.suites.history import add_history_parser
from reports.compare import parse_fail_on
from reports.pricing import PricesError
from reports.schema import ResultFileError
from reports.suiteschema import SuiteError
from scenarios.catalogue import ScenarioError
from targets.awslambda.server import add_arguments as add_lambda_arguments
from targets.entrypoint import positive_int
from targets.errors import TargetError
from targets.fastapi.server import POOLS as FASTAPI_POOLS
from targets.fastapi.server import add_arguments as add_fastapi_arguments
from targets.flask.server import add_arguments as add_flask_arguments
from targets.grpc.server import add_arguments as add_grpc_arguments
from targets.rayserve.server import add_arguments as add_rayserve_arguments
from targets.runtimes.cpuset import parse_cpus
from targets.wire import codec
from targets.wire.codec import ENCODINGS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploybench",
        description="Deploy one PyTorch model several ways, load each the same way, compare.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="deploy, check parity, load, measure, report")
    run.add_argument("--targets", type=parse_targets, default=None,
                     help=f"comma-separated deployments to compare, of "
                          f"{','.join(RUNNABLE)} (default: {','.join(TARGETS)}; none when "
                          f"--endpoint is given)")
    run.add_argument("--endpoint", type=parse_endpoint_option, action="append", default=[],
                     metavar="NAME=URL",
                     help="also measure a deployment already running elsewhere (repeatable): "
                          "http://HOST:PORT[/PREFIX] speaking the Flask API, "
                          "grpc://HOST:PORT, or a Lambda function, lambda://REGION/FUNCTION"
                          "[:QUALIFIER] or its ARN (boto3's Invoke API); nothing is started, "
                          "its CPU and memory are not measured")
    run.add_argument("--bundle", default=None,
                     help="model bundle: digits (default) or vision, or the path of your own "
                          "bundle module (.py; `deploybench init-bundle NAME` writes one)")
    run.add_argument("--model", type=Path, default=None,
                     help="serve a saved model instead: a TorchScript or torch.export archive")
    run.add_argument("--handler", type=Path, default=None,
                     help="with --model: a module with any of preprocess, postprocess, "
                          "example_requests, INPUT_SHAPE, NAME, DESCRIPTION, "
                          "DEFAULT_ENCODING")
    run.add_argument("--input-shape", default=None, metavar="SHAPE",
                     help="with --model: one example's shape without the batch dimension, "
                          "e.g. 64 or 3x224x224 (or INPUT_SHAPE in the handler)")
    run.add_argument("--scenario", default="quick",
                     help="scenario name (see `deploybench scenarios`) or YAML path")
    run.add_argument("--out", type=Path, default=None,
                     help="result folder (default results/BUNDLE-TIMESTAMP); never overwritten")
    run.add_argument("--target-cpus", type=parse_cpus, default=None,
                     help="CPUs for the deployment, e.g. '1' or '2-3' (default: upper half)")
    run.add_argument("--loadgen-cpus", type=parse_cpus, default=None,
                     help="CPUs for the load generator (default: lower half)")
    wire = run.add_mutually_exclusive_group()
    wire.add_argument("--encoding", choices=ENCODINGS, default=None,
                      help="request encoding for served targets (default: the bundle's)")
    wire.add_argument("--encodings", type=parse_encodings, default=None, metavar="LIST",
                      help="compare encodings, e.g. json,binary: flask, fastapi, lambda and "
                           "http:// endpoints are measured once per encoding, as results "
                           "NAME-ENCODING; grpc (protobuf) and inprocess once. The report "
                           "gets a 'Payload encodings' section")
    run.add_argument("--batching", type=parse_batching, default=None, metavar="SPEC",
                     help="dynamic batching in the servers that can batch (flask, fastapi, "
                          "grpc, rayserve): "
                          "max_batch=N,max_wait_ms=M measures them batched only, as "
                          "results NAME+batch; 'both' (or both,max_batch=N,max_wait_ms=M) "
                          "also unbatched, as NAME (defaults max_batch=16,max_wait_ms=0). "
                          "Other targets and --endpoint ones are measured once, "
                          "unbatched. The report gets a 'Batching' section")
    run.add_argument("--metrics", action="store_true",
                     help="every target exposes Prometheus metrics (GET /metrics; gRPC on a "
                          "side port; the Lambda emulator CloudWatch's) and the load "
                          "generator scrapes them at each stage's edges and every "
                          "scrape_interval_s (default 5 s) in between; each stage's "
                          "target_metrics cross-checks the target's count and latency "
                          "against the load generator's. With --monitoring: only when every "
                          "mode has metrics")
    run.add_argument("--log-predictions", type=parse_log_rate, default=None,
                     metavar="RATE",
                     help="every target logs this fraction (0 < RATE <= 1) of its requests "
                          "(input, output, model version, time) to SQLite in "
                          "OUT/logs/NAME-predictions/. With --monitoring: the rate of its "
                          "log modes (default 1), refused when no mode logs")
    run.add_argument("--monitoring", type=parse_modes, default=None, metavar="MODES",
                     help="measure each target once per mode, e.g. off,metrics,metrics+log "
                          "(modes: off, metrics, log, metrics+log), as results NAME, "
                          "NAME+metrics, NAME+metrics+log (after +batch): the cost of "
                          "monitoring. One mode: every result in it, names unchanged. "
                          "--endpoint targets are measured once, monitoring off. Default: "
                          "the scenario's monitoring list (scenario monitoring), else off")
    run.add_argument("--flask-workers", type=positive_int, default=None,
                     help="gunicorn workers (default: one per target CPU)")
    run.add_argument("--flask-threads", type=positive_int, default=None,
                     help="threads per gunicorn worker (default 1; gthread only)")
    run.add_argument("--flask-worker-class", choices=("gthread", "gevent", "sync"),
                     default=None,
                     help="gunicorn's worker class (default gthread: keep-alive, fair; "
                          "see the measurements in docs/methodology.md)")
    run.add_argument("--fastapi-workers", type=positive_int, default=None,
                     help="uvicorn worker processes (default: one per target CPU)")
    run.add_argument("--fastapi-threads", type=positive_int, default=None,
                     help="threads that run the model in each uvicorn worker (default 2)")
    run.add_argument("--fastapi-pool", choices=FASTAPI_POOLS, default=None,
                     help="where fastapi runs the model, off the event loop: executor (a "
                          "ThreadPoolExecutor per worker, the default), anyio "
                          "(run_in_threadpool) or sync (a def endpoint); see the "
                          "measurements in docs/methodology.md")
    run.add_argument("--grpc-workers", type=positive_int, default=None,
                     help="gRPC server processes (default: one per target CPU)")
    run.add_argument("--grpc-threads", type=positive_int, default=None,
                     help="threads in each gRPC server's pool (default 4; sync API only)")
    run.add_argument("--grpc-api", choices=("sync", "aio"), default=None,
                     help="gRPC's Python API for the server: sync (a thread pool) or aio "
                          "(asyncio; the model runs on the event loop). Default sync")
    run.add_argument("--rayserve-workers", type=positive_int, default=None,
                     help="Ray Serve replicas (default: one per target CPU)")
    run.add_argument("--rayserve-threads", type=positive_int, default=None,
                     help="requests a Ray Serve replica takes at once (Serve's "
                          "max_ongoing_requests; default 5)")
    run.add_argument("--lambda-memory-mb", type=parse_memory_sizes, default=None,
                     metavar="MB[,MB...]",
                     help="Lambda memory size, 128 to 10240: it sets the REPORT, the cost "
                          "and (as on AWS) the CPU share (default 1769: one vCPU). Several "
                          "(e.g. 512,1024,1769,3008) measure lambda once per size, as "
                          "results lambda-MB, and the report adds 'Lambda power tuning'; "
                          "scenario power has its own list")
    run.add_argument("--lambda-concurrency", type=positive_int, default=None,
                     help="most Lambda environments at once; more requests are throttled "
                          "(default: the scenario's highest concurrency, at most 64)")
    run.add_argument("--lambda-timeout", type=float, default=None,
                     help="Lambda function timeout in seconds (default 30)")
    run.add_argument("--lambda-sandbox", choices=("auto", "off"), default=None,
                     help="auto (default): each Lambda environment held by cgroups to its "
                          "memory size's CPU share (memory/1,769 CPUs) and memory, as on AWS, "
                          "where this machine allows; off: every environment unthrottled")
    run.add_argument("--lambda-freeze", action=argparse.BooleanOptionalAction, default=None,
                     help="freeze an idle Lambda environment until its next invocation, as "
                          "AWS does (default on)")
    run.add_argument("--lambda-platform-init-ms", type=non_negative_float, default=None,
                     help="modelled milliseconds AWS adds to each Lambda cold start (a "
                          "microVM and its container), reported beside the measured cold "
                          "start; default 50, Lambda's container-loading target (Brooker et "
                          "al., USENIX ATC 2023); 0 to leave it out")
    run.add_argument("--prices", type=Path, default=None,
                     help="YAML/JSON file overriding the dated default prices used for cost "
                          "(Lambda per request and GB-s; always-on per vCPU-hour and GB-hour)")
    run.add_argument("--trials", type=positive_int, default=1,
                     help="measure every stage N times; the report gives the median, a 95%% "
                          "confidence interval and whether targets differ significantly")
    run.add_argument("--slo", type=parse_slo, default=None,
                     help="service-level objective, e.g. p99=50ms,rps=500; sweeps stop once "
                          "p99 passes it (default: the scenario's slo_p99_ms, else p99=100ms)")
    run.add_argument("--runtime", choices=("process", "docker"), default="process",
                     help="run flask, fastapi, grpc and lambda as local processes (default) or as "
                          "containers (images deploybench-TARGET:TAG, built by "
                          "docker/build.sh when missing) with the same CPUs and a memory limit")
    run.add_argument("--network", choices=("host", "bridge"), default="host",
                     help="--runtime docker: host networking (default) or a bridge network "
                          "with the port published on 127.0.0.1")
    run.add_argument("--container-memory-mb", type=positive_int, default=None,
                     help="--runtime docker: memory limit per container (default 2048 per "
                          "target CPU)")
    run.add_argument("--image-tag", default="latest",
                     help="--runtime docker: tag of the deploybench-TARGET images")
    run.add_argument("--loadgen-workers", type=positive_int, default=1,
                     help="Locust worker processes for served targets (Locust's distributed "
                          "mode; samples from all of them are merged, percentiles computed "
                          "from the merged samples). Closed-loop stages only (default 1)")
    run.add_argument("--max-body-bytes", type=positive_int,
                     default=codec.DEFAULT_LIMITS.max_body_bytes,
                     help="flask, fastapi, grpc, lambda: larger requests are refused (413, "
                          "RESOURCE_EXHAUSTED) (default 16 MiB)")
    run.add_argument("--max-batch", type=positive_int, default=codec.DEFAULT_LIMITS.max_batch,
                     help="flask, fastapi, grpc, lambda: larger batches are refused (default 64)")
    run.add_argument("--loadgen-remote-workers", type=int, default=0, metavar="N",
                     help="also wait for N workers started on other machines with "
                          "`deploybench loadgen-worker --master HOST:PORT` (--endpoint "
                          "targets only: served targets listen on this machine's loopback)")
    run.add_argument("--loadgen-master", default=None, metavar="HOST:PORT",
                     help="where the master listens for remote workers (default "
                          f"127.0.0.1:{DEFAULT_MASTER_PORT}; 0.0.0.0:PORT lets other "
                          "machines in)")
    run.add_argument("--monthly-requests", type=parse_volume, default=None,
                     help="expected requests a month, for the report's costs and "
                          "recommendation, e.g. 10M (default 10M)")
    run.add_argument("--strict", action="store_true",
                     help=f"exit {EXIT_INVALID} when any stage is INVALID (for CI)")
    run.set_defaults(func=cmd_run)

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
