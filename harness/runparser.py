"""``deploybench run``'s options: the ``run`` subparser, in a module of its own so that
``deploybench suite`` parses each cell's arguments with run's own parser
(:func:`add_run_parser`) without importing :mod:`harness.cli`."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.loadgen.swarm.messages import DEFAULT_MASTER_PORT
from harness.monitoring import parse_log_rate, parse_modes
from harness.options import (
    non_negative_float,
    parse_batching,
    parse_encodings,
    parse_endpoint_option,
    parse_memory_sizes,
    parse_slo,
    parse_targets,
    parse_volume,
)
from harness.run_command import EXIT_INVALID, cmd_run
from harness.runner import RUNNABLE, TARGETS
from targets.entrypoint import positive_int
from targets.fastapi.server import POOLS as FASTAPI_POOLS
from targets.runtimes.cpuset import parse_cpus
from targets.wire import codec
from targets.wire.codec import ENCODINGS


def add_run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]
                   ) -> argparse.ArgumentParser:
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
    return run
