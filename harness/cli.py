"""The ``deploybench`` command line.

Only :func:`main` turns the project's exceptions into ``error: ...`` messages: exit code
1 for user errors, 2 for usage errors (argparse's own), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UserError
from reports.schema import ResultFileError
from scenarios.catalogue import ScenarioError
from targets.codec import ENCODINGS
from targets.cpuset import format_cpus, parse_cpus
from targets.errors import TargetError

if TYPE_CHECKING:
    from harness.cpus import CpuPlan
    from scenarios.catalogue import Scenario


def _targets(text: str) -> tuple[str, ...]:
    from harness.runner import TARGETS, TEST_TARGETS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in TARGETS + TEST_TARGETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown target {unknown[0] if unknown else text!r}; choose from {', '.join(TARGETS)}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a target is named twice in {text!r}")
    return names


def _endpoint(text: str) -> tuple[str, str]:
    from harness.runner import TARGETS, TEST_TARGETS
    from targets.external import parse_endpoint

    try:
        name, url = parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if name in TARGETS + TEST_TARGETS:
        raise argparse.ArgumentTypeError(
            f"endpoint name {name!r} is a built-in target's; name it after where it runs, "
            f"e.g. k8s-{name}")
    return name, url


SLO_KEYS = ("p50", "p90", "p95", "p99", "rps")


def parse_slo(text: str) -> dict[str, float]:
    """``p99=50ms,rps=500`` -> {"p99": 50.0, "rps": 500.0}: latency in ms (``ms``, ``s``
    or a bare number of ms), throughput in requests/s."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in SLO_KEYS:
            raise argparse.ArgumentTypeError(
                f"bad SLO part {part!r}: use KEY=VALUE with KEY one of {', '.join(SLO_KEYS)}, "
                f"e.g. p99=50ms,rps=500")
        value = value.strip().lower()
        scale = 1.0
        if key != "rps":
            if value.endswith("ms"):
                value = value[:-2]
            elif value.endswith("s"):
                value, scale = value[:-1], 1000.0
        try:
            number = float(value) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad SLO value in {part!r}") from None
        if not number > 0:
            raise argparse.ArgumentTypeError(f"SLO values must be > 0 ({part!r})")
        out[key] = number
    if not out:
        raise argparse.ArgumentTypeError("empty SLO; e.g. p99=50ms")
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from harness.cpus import plan_cpus
    from harness.results import choose_out_dir
    from harness.runner import TARGETS
    from scenarios import catalogue
    from targets.bundle import get_bundle

    endpoints = dict(args.endpoint)
    if len(endpoints) != len(args.endpoint):
        raise UserError("two --endpoint options have the same name")
    if args.targets is None:
        args.targets = () if endpoints else TARGETS
    args.targets = (*args.targets, *endpoints)
    args.endpoints = endpoints

    scenario = catalogue.load(args.scenario)
    get_bundle(args.bundle)  # fail on a bad name before anything starts
    if args.loadgen_workers > 1:
        if scenario.rate or scenario.rate_fractions:
            raise UserError(f"--loadgen-workers runs closed-loop stages only; scenario "
                            f"{scenario.name} has open-loop ones (rate/rate_fractions). Use "
                            "one load-generator process for it")
        if "inprocess" in args.targets:
            print("note: inprocess runs the model inside the load generator, so it is "
                  "driven by one process whatever --loadgen-workers says", file=sys.stderr)
    cpus = plan_cpus(args.target_cpus, args.loadgen_cpus)
    notes = []
    if cpus.overlap:
        notes.append(f"target and load generator share CPUs {list(cpus.overlap)}")
        print(f"warning: the target and the load generator share CPUs {list(cpus.overlap)}: "
              "every figure will mix both", file=sys.stderr)
    if cpus.shared_cores:
        cores = ", ".join(format_cpus(core) for core in cpus.shared_cores)
        notes.append(f"target and load generator run on hardware threads of the same "
                     f"physical cores ({cores})")
        print(f"warning: the target and the load generator run on hardware threads of the "
              f"same physical cores ({cores}); they compete for those cores. Give each side "
              f"whole cores with --target-cpus/--loadgen-cpus", file=sys.stderr)
    out_dir, moved = choose_out_dir(args.out or default_out(args.bundle))
    # Absolute: servers and containers are handed paths in it (logs, REPORT records), and
    # a container's working directory is not ours.
    out_dir = out_dir.resolve()
    if moved:
        print(f"note: {moved}", file=sys.stderr)
    # The orchestrator stays off the target's CPUs too (restored after, so main() can be
    # called again in one process, as tests do).
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus.loadgen)
    try:
        return _run(args, scenario, cpus, out_dir, notes)
    finally:
        os.sched_setaffinity(0, allowed)


def _run(args: argparse.Namespace, scenario: Scenario, cpus: CpuPlan, out_dir: Path,
         notes: list[str]) -> int:
    from harness import calibrate
    from harness.console import ConsoleObserver
    from harness.loadgen import LocustLoadGenerator, SimulatedLoadGenerator
    from harness.pricing import load_prices
    from harness.runner import Runner, RunPlan
    from reports.console import print_run
    from reports.render import render_run_dir

    simulated = args.targets == ("fake",)
    docker = None
    if args.runtime == "docker":
        from targets.container import DockerRuntime, client

        client()  # no engine: say so now, before anything starts
        docker = DockerRuntime(tag=args.image_tag, memory_mb=args.container_memory_mb,
                               network=args.network)
    calibration, calibration_note = (None, None) if simulated else calibrate.load_for(
        list(cpus.target), list(cpus.loadgen))
    if calibration_note:
        print(f"note: {calibration_note}", file=sys.stderr)
    plan = RunPlan(targets=args.targets, bundle=args.bundle, scenario=scenario, cpus=cpus,
                   out_dir=out_dir, encoding=args.encoding, flask_workers=args.flask_workers,
                   flask_threads=args.flask_threads, grpc_workers=args.grpc_workers,
                   grpc_threads=args.grpc_threads, lambda_memory_mb=args.lambda_memory_mb,
                   lambda_concurrency=args.lambda_concurrency,
                   lambda_timeout_s=args.lambda_timeout, prices=load_prices(args.prices),
                   notes=tuple(notes), trials=args.trials, slo=args.slo or {},
                   slo_p99_ms=(args.slo or {}).get("p99", scenario.slo_p99_ms),
                   calibration=calibration, calibration_note=calibration_note,
                   monthly_requests=args.monthly_requests, endpoints=args.endpoints,
                   loadgen_workers=args.loadgen_workers, docker=docker)
    loadgen = SimulatedLoadGenerator() if simulated else LocustLoadGenerator()
    load_s = scenario.estimated_s * len(args.targets) * args.trials
    print(f"deploybench: {', '.join(args.targets)} serving {args.bundle}, scenario "
          f"{scenario.name} (at least ~{load_s:.0f} s of load), "
          f"{cpus.describe()}; results in {out_dir}", file=sys.stderr)
    started = time.monotonic()
    with ConsoleObserver() as observer:
        run = Runner(plan, loadgen, observer).run()
    rendered = render_run_dir(out_dir, run)
    print_run(run)
    print(f"\nwrote {out_dir / 'run.json'}, {rendered.markdown}, {rendered.html} "
          f"in {time.monotonic() - started:.0f} s")
    if not all(t["status"] == "ok" for t in run["targets"]):
        return 1
    invalid = sum(not s["valid"] for t in run["targets"] for s in t["stages"])
    if invalid and args.strict:
        print(f"{invalid} stage(s) INVALID (--strict)", file=sys.stderr)
        return EXIT_INVALID
    return 0


#: `run --strict`: every target ran, but some stage's figures are not to be trusted.
EXIT_INVALID = 4
#: `compare --fail-on`: a significant change beyond a threshold, or a target failed in B.
EXIT_REGRESSION = 3


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure the harness's ceiling per protocol against null targets, and keep it."""
    from harness import calibrate
    from harness.console import ConsoleObserver
    from harness.cpus import plan_cpus
    from harness.loadgen import LocustLoadGenerator
    from harness.pricing import load_prices
    from harness.results import choose_out_dir
    from harness.runner import Runner, RunPlan
    from reports.render import render_run_dir
    from scenarios import catalogue

    scenario = catalogue.load(args.scenario)
    cpus = plan_cpus(args.target_cpus, args.loadgen_cpus)
    if cpus.overlap:
        raise UserError("calibration needs the load generator and the null target on "
                        "separate CPUs (they overlap); pass --target-cpus/--loadgen-cpus")
    out_dir, moved = choose_out_dir(
        args.out or Path("results") / f"calibration-{dt.datetime.now():%Y%m%d-%H%M%S}")
    if moved:
        print(f"note: {moved}", file=sys.stderr)
    names = tuple(f"null-{p}" for p in args.protocols)
    plan = RunPlan(targets=names, bundle=calibrate.NULL_BUNDLE, scenario=scenario, cpus=cpus,
                   out_dir=out_dir, notes=("calibration: null targets, no model",),
                   prices=load_prices(None))
    print(f"deploybench calibrate: {', '.join(names)} (at least "
          f"~{scenario.estimated_s * len(names):.0f} s of load), {cpus.describe()}; "
          f"results in {out_dir}", file=sys.stderr)
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus.loadgen)
    try:
        with ConsoleObserver() as observer:
            run = Runner(plan, LocustLoadGenerator(), observer,
                         target_factory=calibrate.make_null_target).run()
    finally:
        os.sched_setaffinity(0, allowed)
    render_run_dir(out_dir, run)
    saved = calibrate.save(run, out_dir, list(cpus.target), list(cpus.loadgen), args.save)
    print(f"{'protocol':<10} {'ceiling req/s':>13} {'at users':>8} {'p50 @1 user':>11} "
          f"{'loadgen CPU':>11} {'server CPU':>10}  limited by")
    for protocol, c in calibrate.ceilings(run).items():
        if "error" in c:
            print(f"{protocol:<10} failed: {c['error']}")
            continue
        p50 = c["p50_ms_at_1_user"]
        flag = "" if c["valid"] else "  [INVALID: " + "; ".join(c["reasons"]) + "]"
        print(f"{protocol:<10} {c['rps']:>13,.0f} {c['users']:>8} "
              f"{'-' if p50 is None else f'{p50:.3f} ms':>11} "
              f"{c['loadgen_cpu_percent']:>10.0f}% {c['target_cpu_percent']:>9.0f}%  "
              f"{c['limited_by']}{flag}")
    print(f"\nsaved {saved}; `deploybench run` on these CPUs flags targets within 80% of "
          f"these ceilings. Report: {out_dir / 'report.md'}")
    return 0 if all(t["status"] == "ok" for t in run["targets"]) else 1


def _protocols(text: str) -> tuple[str, ...]:
    from harness.calibrate import PROTOCOLS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in PROTOCOLS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown protocol {bad[0] if bad else text!r}; "
                                         f"choose from {', '.join(PROTOCOLS)}")
    return tuple(dict.fromkeys(names))


def default_out(bundle: str) -> Path:
    return Path("results") / f"{bundle}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def parse_volume(text: str) -> float:
    """Requests a month: ``10M``, ``250k``, ``1.5B``, ``2e7`` or a plain number."""
    value = text.strip().lower().replace(",", "").replace("_", "")
    scale = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}.get(value[-1:], 1.0)
    if scale != 1.0:
        value = value[:-1]
    try:
        number = float(value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad volume {text!r}: give requests a month, e.g. 10M, 250k or 2e7") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"the volume must be > 0 (got {text!r})")
    return number


def cmd_report(args: argparse.Namespace) -> int:
    from harness.pricing import load_prices
    from reports.console import print_run
    from reports.render import render_run_dir
    from reports.schema import load_run

    run = load_run(args.run_dir)
    # What-if: decide again for another objective, volume or prices. run.json keeps what
    # was measured; only the reports change.
    changed = []
    if args.slo is not None:
        run["metadata"]["slo"] = args.slo
        run["metadata"]["slo_p99_ms"] = args.slo.get("p99")
        changed.append("--slo")
    if args.monthly_requests is not None:
        run["metadata"]["monthly_requests"] = args.monthly_requests
        changed.append("--monthly-requests")
    if args.prices is not None:
        run["prices"] = load_prices(args.prices)
        changed.append("--prices")
    rendered = render_run_dir(args.run_dir, run)
    print_run(run)
    print(f"\nwrote {rendered.markdown} and {rendered.html}"
          + (f" (decided with {', '.join(changed)}; run.json unchanged)" if changed else ""))
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Rewrite an older run.json at this version; the original is kept beside it."""
    import json
    import shutil

    from harness.results import write_run
    from reports.schema import RUN_FILE, SCHEMA_VERSION, load_run

    run_dir = args.run_dir if args.run_dir.is_dir() else args.run_dir.parent
    run = load_run(run_dir)
    try:
        old = json.loads((run_dir / RUN_FILE).read_text()).get("schema_version")
    except (OSError, ValueError) as exc:  # load_run read it a moment ago
        raise UserError(f"cannot read {run_dir / RUN_FILE} ({exc})") from exc
    if old == SCHEMA_VERSION:
        print(f"{run_dir / RUN_FILE} is already schema {SCHEMA_VERSION}: nothing to do")
        return 0
    backup = run_dir / f"run.v{old}.json"
    if backup.exists():
        raise UserError(f"{backup} exists already; move it away to upgrade again")
    shutil.copy2(run_dir / RUN_FILE, backup)
    write_run(run_dir, run)
    print(f"upgraded {run_dir / RUN_FILE} from schema {old} to {SCHEMA_VERSION} "
          f"(original kept as {backup.name}); `deploybench report {run_dir}` re-renders it")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare run B against run A per target and load; exit 3 when a --fail-on check fails."""
    import json

    from harness.results import atomic_write_text
    from reports import compare
    from reports.schema import load_run

    run_a, run_b = load_run(args.run_a), load_run(args.run_b)
    targets = None
    if args.targets:
        targets = tuple(dict.fromkeys(n.strip() for n in args.targets.split(",") if n.strip()))
        known = compare.target_names(run_a) + compare.target_names(run_b)
        unknown = [n for n in targets if n not in known]
        if unknown or not targets:
            raise UserError(f"no target {unknown[0] if unknown else args.targets!r} in either "
                            f"run. Choose from {', '.join(dict.fromkeys(known))}")
    checks = [check for group in args.fail_on or [] for check in group]
    result = compare.compare(run_a, run_b, targets)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"A: {args.run_a}\nB: {args.run_b}\n")
    for line in compare.render(result, checks):
        print(line)
    failures = compare.gate(result, checks)
    if args.json:
        doc = compare.to_json(result, checks, failures, str(args.run_a), str(args.run_b))
        atomic_write_text(args.json, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if failures:
        print(f"FAIL ({', '.join(c.text for c in checks)}): {'; '.join(failures)}")
        return EXIT_REGRESSION
    if checks:
        print(f"PASS ({', '.join(c.text for c in checks)}): no significant change beyond "
              f"the thresholds")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.target == "lambda":
        from targets.awslambda import server as lambda_server

        return lambda_server.serve(args)
    if args.target == "grpc":
        from targets.grpc import server as grpc_server

        return grpc_server.serve(args)
    from targets.flask import server

    server.serve(args)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from scenarios import catalogue

    for name in catalogue.available():
        sc = catalogue.load(name)
        print(f"{name:<10} >={sc.estimated_s:.0f} s/target  {describe_stages(sc):<32} "
              f"{sc.description}")
    return 0


def describe_stages(sc: Scenario) -> str:
    parts = []
    if sc.concurrency:
        parts.append(f"users {list(sc.concurrency)}")
    if sc.sweep:
        parts.append(f"sweep {sc.sweep.start}..{sc.sweep.max}")
    if sc.rate:
        parts.append(f"{sc.arrival} {list(sc.rate)}/s")
    if sc.rate_fractions:
        parts.append(f"{sc.arrival} at {list(sc.rate_fractions)} of capacity")
    if sc.cold_starts:
        parts.append(f"{sc.cold_starts} cold starts")
    return ", ".join(parts)


def cmd_bundles(args: argparse.Namespace) -> int:
    from targets.bundle import BUILTIN_BUNDLES, get_bundle, serve_batch

    if args.time:
        # One core, one torch thread: the figure the bundle descriptions quote.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        import torch

        torch.set_num_threads(1)
    for name in BUILTIN_BUNDLES:
        bundle = get_bundle(name)
        line = f"{name:<8} {bundle.description}"
        if args.time:
            bundle.load()
            example = bundle.example_requests()[0]
            for _ in range(3):
                serve_batch(bundle, example)
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < 1.0:
                serve_batch(bundle, example)
                n += 1
            per_call = (time.perf_counter() - started) / n
            info = bundle.info()
            line += (f"\n         batch-1 inference on one core: {per_call * 1000:.3f} ms "
                     f"({n} calls)")
            if info.get("accuracy") is not None:
                line += f"; held-out accuracy {info['accuracy']:.1%}"
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from harness.runner import TARGETS
    from targets.awslambda.server import add_arguments as add_lambda_arguments
    from targets.flask.server import add_arguments as add_flask_arguments
    from targets.grpc.server import add_arguments as add_grpc_arguments
    from targets.serving import positive_int

    parser = argparse.ArgumentParser(
        prog="deploybench",
        description="Deploy one PyTorch model several ways, load each the same way, compare.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="deploy, check parity, load, measure, report")
    run.add_argument("--targets", type=_targets, default=None,
                     help=f"comma-separated deployments to compare (default: "
                          f"{','.join(TARGETS)}; none when --endpoint is given)")
    run.add_argument("--endpoint", type=_endpoint, action="append", default=[],
                     metavar="NAME=URL",
                     help="also measure a deployment already running elsewhere (repeatable): "
                          "http://HOST:PORT[/PREFIX] speaking the Flask API, "
                          "grpc://HOST:PORT, or a Lambda function, lambda://REGION/FUNCTION"
                          "[:QUALIFIER] or its ARN (boto3's Invoke API); nothing is started, "
                          "its CPU and memory are not measured")
    run.add_argument("--bundle", default="digits", help="model bundle: digits or vision")
    run.add_argument("--scenario", default="quick",
                     help="scenario name (see `deploybench scenarios`) or YAML path")
    run.add_argument("--out", type=Path, default=None,
                     help="result folder (default results/BUNDLE-TIMESTAMP); never overwritten")
    run.add_argument("--target-cpus", type=parse_cpus, default=None,
                     help="CPUs for the deployment, e.g. '1' or '2-3' (default: upper half)")
    run.add_argument("--loadgen-cpus", type=parse_cpus, default=None,
                     help="CPUs for the load generator (default: lower half)")
    run.add_argument("--encoding", choices=ENCODINGS, default=None,
                     help="request encoding for served targets (default: the bundle's)")
    run.add_argument("--flask-workers", type=positive_int, default=None,
                     help="gunicorn workers (default: one per target CPU)")
    run.add_argument("--flask-threads", type=positive_int, default=None,
                     help="threads per gunicorn worker (default 1)")
    run.add_argument("--grpc-workers", type=positive_int, default=None,
                     help="gRPC server processes (default: one per target CPU)")
    run.add_argument("--grpc-threads", type=positive_int, default=None,
                     help="threads in each gRPC server's pool (default 4)")
    run.add_argument("--lambda-memory-mb", type=positive_int, default=None,
                     help="Lambda memory size, for REPORT and cost (default 1769: one vCPU)")
    run.add_argument("--lambda-concurrency", type=positive_int, default=None,
                     help="most Lambda environments at once; more requests are throttled "
                          "(default: the scenario's highest concurrency, at most 64)")
    run.add_argument("--lambda-timeout", type=float, default=None,
                     help="Lambda function timeout in seconds (default 30)")
    run.add_argument("--prices", type=Path, default=None,
                     help="YAML/JSON file overriding the dated default prices used for cost "
                          "(Lambda per request and GB-s; always-on per vCPU-hour and GB-hour)")
    run.add_argument("--trials", type=positive_int, default=1,
                     help="measure every stage N times; the report gives the median, a 95%% "
                          "confidence interval and whether targets differ significantly")
    run.add_argument("--slo", type=parse_slo, default=None,
                     help="service-level objective, e.g. p99=50ms,rps=500; sweeps stop once "
                          "p99 passes it (default: the scenario's slo_p99_ms, if any)")
    run.add_argument("--runtime", choices=("process", "docker"), default="process",
                     help="run flask, grpc and lambda as local processes (default) or as "
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
    run.add_argument("--monthly-requests", type=parse_volume, default=None,
                     help="expected requests a month, for the report's costs and "
                          "recommendation, e.g. 10M (default 10M)")
    run.add_argument("--strict", action="store_true",
                     help=f"exit {EXIT_INVALID} when any stage is INVALID (for CI)")
    run.set_defaults(func=cmd_run)

    cal = sub.add_parser("calibrate", help="measure the harness's own ceiling per protocol "
                                           "against null targets (no model)")
    cal.add_argument("--protocols", type=_protocols, default=("http", "grpc", "lambda",
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

    from reports.compare import parse_fail_on

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
    grpc = serve_sub.add_parser("grpc", help="the gRPC server (health, reflection)")
    add_grpc_arguments(grpc)
    grpc.set_defaults(func=cmd_serve)
    aws = serve_sub.add_parser("lambda", help="the Lambda emulator (Invoke API, Function URL)")
    add_lambda_arguments(aws)
    aws.set_defaults(func=cmd_serve)

    scen = sub.add_parser("scenarios", help="list the built-in scenarios")
    scen.set_defaults(func=cmd_scenarios)

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
    except (UserError, TargetError, ScenarioError, ResultFileError) as exc:
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
