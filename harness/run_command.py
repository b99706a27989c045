"""``deploybench run``: check the options, plan, run every target, write and print the
results."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import calibrate, encodings, monitoring
from harness.console import ConsoleObserver
from harness.cpus import plan_cpus
from harness.errors import UserError
from harness.loadgen.launch import LocustLoadGenerator
from harness.loadgen.simulated import SimulatedLoadGenerator
from harness.loadgen.swarm.messages import DEFAULT_MASTER_PORT, parse_master
from harness.options import default_out
from harness.results import choose_out_dir
from harness.runner import TARGETS, Runner, RunPlan
from reports.console import print_run
from reports.pricing import load_prices
from reports.render import render_run_dir
from reports.serverless import PLATFORM_INIT_MS
from scenarios import catalogue
from targets import registry
from targets.bundles.check import check_bundle
from targets.bundles.user import file_spec, is_file_spec, label, model_spec, parse_shape
from targets.errors import TargetError
from targets.runtimes.container import DockerRuntime, client
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import die_with_parent
from targets.wire import codec

if TYPE_CHECKING:
    from harness.cpus import CpuPlan
    from scenarios.catalogue import Scenario
    from targets.bundles.check import CheckedBundle
    from targets.monitoring import Monitoring


#: `run --strict`: every target ran, but some stage's figures are not to be trusted.
EXIT_INVALID = 4


def _loadgen_master(args: argparse.Namespace, endpoints: dict[str, str]) -> str | None:
    """Where the master listens for remote workers (None: no remote workers)."""
    if args.loadgen_remote_workers < 0:
        raise UserError("--loadgen-remote-workers must be 0 or more")
    if not args.loadgen_remote_workers:
        if args.loadgen_master:
            raise UserError("--loadgen-master is for --loadgen-remote-workers N")
        return None
    functions = [n for n, url in endpoints.items()
                 if registry.endpoint_kind(url).scheme == "lambda"]
    if functions:  # their REPORT records are written where the users run
        raise UserError(f"{', '.join(functions)}: a Lambda function's REPORT records are "
                        "kept by the load generator's own machine, so remote workers cannot "
                        "measure it; use --loadgen-workers on this machine")
    served = [t for t in args.targets if t not in endpoints]
    if served:
        raise UserError(f"remote load-generator workers cannot reach {', '.join(served)}: "
                        "served targets listen on this machine's loopback. Measure "
                        "deployments reachable from the workers with --endpoint NAME=URL")
    master = args.loadgen_master or f"127.0.0.1:{DEFAULT_MASTER_PORT}"
    try:
        host, _ = parse_master(master)
    except ValueError as exc:
        raise UserError(f"--loadgen-master: {exc}") from None
    if host in ("0.0.0.0", "*", "::"):
        print(f"warning: the load-generator master listens on every interface ({master}): "
              "anyone who can reach it can join the run as a worker", file=sys.stderr)
    elif host.startswith("127."):
        print(f"note: the master listens on {master}, loopback: only workers on this "
              "machine can join (give --loadgen-master ADDRESS:PORT for others)",
              file=sys.stderr)
    return master


def bundle_spec(args: argparse.Namespace) -> str:
    """The bundle spec --bundle, or --model with --handler and --input-shape, name."""
    if args.model is None:
        if args.handler is not None or args.input_shape is not None:
            raise UserError("--handler and --input-shape go with --model PATH")
        bundle = args.bundle or "digits"
        return file_spec(Path(bundle)) if is_file_spec(bundle) else bundle
    if args.bundle is not None:
        raise UserError("give --bundle or --model, not both")
    for option, path in (("--model", args.model), ("--handler", args.handler)):
        if path is not None and not path.is_file():
            raise UserError(f"{option} {path}: no such file")
    shape = parse_shape(args.input_shape) if args.input_shape else None
    return model_spec(args.model, args.handler, shape)


def _encodings(args: argparse.Namespace, endpoints: dict[str, str]) -> tuple[str, ...]:
    """--encodings, checked: the encodings to compare, or () for one encoding (a list of
    one is --encoding)."""
    wires = tuple(getattr(args, "encodings", None) or ())
    if len(wires) < 2:
        if wires:
            args.encoding = wires[0]
        return ()
    if not any(encodings.per_encoding(t, endpoints) for t in args.targets):
        raise UserError(f"--encodings compares HTTP request encodings, and none of "
                        f"{', '.join(args.targets) or 'the targets'} sends them (grpc always "
                        "sends protobuf, inprocess has no wire, a lambda:// endpoint takes "
                        "events). Add flask, fastapi, lambda or an http:// --endpoint to --targets")
    twice = encodings.duplicates(encodings.measurements(args.targets, endpoints, wires))
    if twice:
        raise UserError(f"two results would be named {twice[0]!r}: with --encodings, results "
                        "are named TARGET-ENCODING. Give the --endpoint another name")
    return wires


def _batching(args: argparse.Namespace, endpoints: dict[str, str],
              notes: list[str]) -> encodings.Batching | None:
    """--batching, checked: refused when no target can batch; a note for each target
    measured unbatched all the same."""
    batching: encodings.Batching | None = getattr(args, "batching", None)
    if batching is None:
        return None
    plain = encodings.unbatchable(args.targets, endpoints)
    if len(plain) == len(args.targets):
        raise UserError(f"--batching batches in deploybench's own servers, and none of "
                        f"{', '.join(args.targets) or 'the targets'} can batch (--endpoint "
                        "deployments are not ours to configure). Add flask, fastapi, grpc "
                        "or rayserve to --targets")
    for name in plain:
        why = ("an --endpoint's server is not ours to configure" if name in endpoints
               else "it has no batching server")
        note = f"--batching: {name} is measured once, unbatched ({why})"
        notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    wires = args.encodings or (args.encoding or "json",)
    twice = encodings.duplicates(encodings.measurements(args.targets, endpoints, wires,
                                                        batching))
    if twice:
        raise UserError(f"two results would be named {twice[0]!r}: with --batching, batched "
                        "results are named TARGET+batch. Give the --endpoint another name")
    return batching


def _memory_sizes(args: argparse.Namespace, endpoints: dict[str, str], scenario: Scenario,
                  notes: list[str]) -> tuple[int, ...]:
    """--lambda-memory-mb, checked: the Lambda memory sizes to compare (each a result
    lambda-MB), or () for one size (then ``args.lambda_memory_mb`` is that size). Without
    the option, the scenario's ``lambda_memory_mb`` list (``power``'s) when lambda is
    measured."""
    sizes = tuple(args.lambda_memory_mb or ())
    sized = [t for t in args.targets if encodings.per_memory_size(t, endpoints)]
    if not sizes and scenario.lambda_memory_mb and sized:
        sizes = scenario.lambda_memory_mb
        print(f"note: scenario {scenario.name}: {', '.join(sized)} measured at "
              f"{', '.join(str(mb) for mb in sizes)} MB (its lambda_memory_mb); give "
              "--lambda-memory-mb to choose the sizes", file=sys.stderr)
    args.lambda_memory_mb = sizes[0] if len(sizes) == 1 else None
    if len(sizes) < 2:
        return ()
    functions = [n for n, url in endpoints.items()
                 if registry.endpoint_kind(url).scheme == "lambda"]
    if not sized:
        raise UserError(f"--lambda-memory-mb with several sizes measures deploybench's own "
                        f"Lambda emulator once per size, and none of "
                        f"{', '.join(args.targets) or 'the targets'} is it (a lambda:// "
                        "function's memory size is not ours to set). Add lambda to --targets")
    for name in functions:
        note = (f"--lambda-memory-mb: {name} is measured once, at its own memory size (a "
                "lambda:// function is not ours to size)")
        notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    wires = args.encodings or (args.encoding or "json",)
    twice = encodings.duplicates(encodings.measurements(args.targets, endpoints, wires,
                                                        args.batching, sizes, args.modes))
    if twice:
        raise UserError(f"two results would be named {twice[0]!r}: with several "
                        "--lambda-memory-mb sizes, results are named lambda-MB. Give the "
                        "--endpoint another name")
    return sizes


def _monitoring(args: argparse.Namespace, endpoints: dict[str, str], scenario: Scenario,
                notes: list[str]) -> tuple[Monitoring, ...]:
    """--metrics, --log-predictions and --monitoring (or the scenario's list), checked
    (harness.monitoring); no two results named alike once the modes' suffixes are on."""
    modes = monitoring.resolve(args, scenario, endpoints, notes)
    wires = args.encodings or (args.encoding or "json",)
    twice = encodings.duplicates(encodings.measurements(args.targets, endpoints, wires,
                                                        args.batching, (), modes))
    if twice:
        raise UserError(f"two results would be named {twice[0]!r}: with several monitoring "
                        "modes, results are named TARGET+MODE. Give the --endpoint another "
                        "name")
    return modes


def _result_names(args: argparse.Namespace) -> list[str]:
    wires = args.encodings or (args.encoding or "json",)
    return [m.name for m in encodings.measurements(args.targets, args.endpoints, wires,
                                                   args.batching, args.lambda_memory_sizes,
                                                   args.modes)]


def _check_deployable(names: tuple[str, ...], runtime: str) -> None:
    """Before anything starts: every named deployment can run here, as asked."""
    for name in names:
        deployment = registry.find(name)
        if deployment is None:
            continue  # an --endpoint
        missing = deployment.missing()
        if missing:
            raise UserError(missing)
        if runtime == "docker" and deployment.server and not deployment.image:
            raise UserError(f"{name} has no container image: it runs as a local process "
                            "only. Run it without --runtime docker, or leave it out of "
                            "--targets")


@dataclass(frozen=True)
class Preflight:
    """What run's checks before the bundle check decided: the scenario, the CPU plan, the
    notes for run.json, and the names of the results the run will measure."""

    scenario: Scenario
    cpus: CpuPlan
    notes: list[str]
    result_names: list[str]

    @property
    def load_s(self) -> float:
        """The scenario's load time per result, times the results (trials not counted)."""
        return self.scenario.estimated_s * len(self.result_names)


def preflight(args: argparse.Namespace) -> Preflight:
    """Every check of run's options that needs no server and no bundle loaded: endpoints,
    targets, deployability, the scenario, encodings, batching, monitoring, memory sizes,
    the CPU plan. Completes ``args`` as the run reads it. Notes go to stderr (the suite
    captures them)."""
    endpoints = dict(args.endpoint)
    if len(endpoints) != len(args.endpoint):
        raise UserError("two --endpoint options have the same name")
    if args.targets is None:
        args.targets = () if endpoints else TARGETS
    args.targets = (*args.targets, *endpoints)
    args.endpoints = endpoints
    args.encodings = _encodings(args, endpoints)

    _check_deployable(args.targets, args.runtime)
    scenario = catalogue.load(args.scenario)
    args.bundle = bundle_spec(args)
    args.loadgen_master = _loadgen_master(args, endpoints)
    if args.loadgen_workers > 1 or args.loadgen_remote_workers:
        if scenario.rate or scenario.rate_fractions:
            raise UserError(f"load-generator workers run closed-loop stages only; scenario "
                            f"{scenario.name} has open-loop ones (rate/rate_fractions). Use "
                            "one load-generator process for it")
        for name in registry.in_load_generator(args.targets):
            print(f"note: {name} runs the model inside the load generator, so it is "
                  "driven by one process whatever --loadgen-workers says", file=sys.stderr)
    cpus = plan_cpus(args.target_cpus, args.loadgen_cpus)
    notes: list[str] = []
    args.batching = _batching(args, endpoints, notes)
    args.modes = _monitoring(args, endpoints, scenario, notes)
    args.lambda_memory_sizes = _memory_sizes(args, endpoints, scenario, notes)
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
    return Preflight(scenario=scenario, cpus=cpus, notes=notes,
                     result_names=_result_names(args))


def cmd_run(args: argparse.Namespace) -> int:
    die_with_parent()  # a cell of a suite: SIGTERM (a partial run.json) if the suite dies
    checks = preflight(args)
    # The orchestrator stays off the target's CPUs, from here (torch's threads, started
    # by the bundle check, inherit the set), restored after so main() can be called
    # again in one process, as tests do.
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, checks.cpus.loadgen)
    try:
        # Before any folder is made or server started: a broken bundle costs nothing.
        checked = check_bundle(args.bundle, lambda text: print(text, file=sys.stderr),
                               max_batch=args.max_batch)
        out_dir, moved = choose_out_dir(args.out or default_out(label(args.bundle)))
        # Absolute: servers and containers are handed paths in it (logs, REPORT
        # records), and a container's working directory is not ours.
        out_dir = out_dir.resolve()
        if moved:
            print(f"note: {moved}", file=sys.stderr)
        return _run(args, checks, out_dir, checked)
    finally:
        os.sched_setaffinity(0, allowed)


def _run(args: argparse.Namespace, checks: Preflight, out_dir: Path,
         checked: CheckedBundle) -> int:
    scenario, cpus, notes = checks.scenario, checks.cpus, checks.notes
    simulated = registry.simulated(args.targets)
    if simulated:
        print("note: --targets fake is deploybench's test target: a fixed service time under "
              "a simulated load; its figures measure no model and no server", file=sys.stderr)
    docker = None
    if args.runtime == "docker":
        client()  # no engine: say so now, before anything starts
        docker = DockerRuntime(tag=args.image_tag, memory_mb=args.container_memory_mb,
                               network=args.network)
        # The images, built or refreshed now, with a word, not inside the first start.

        try:
            docker.prepare([t for t in args.targets if t in registry.WITH_IMAGE],
                           lambda text: print(text, file=sys.stderr, flush=True))
        except TargetError as exc:
            raise UserError(str(exc)) from exc
    calibration, calibration_note = (None, None) if simulated else calibrate.load_for(
        list(cpus.target), list(cpus.loadgen))
    if calibration_note:
        print(f"note: {calibration_note}", file=sys.stderr)
    plan = RunPlan(targets=args.targets, bundle=args.bundle, scenario=scenario, cpus=cpus,
                   out_dir=out_dir, encoding=args.encoding, encodings=args.encodings,
                   batching=args.batching, monitoring=args.modes,
                   flask_workers=args.flask_workers,
                   flask_threads=args.flask_threads,
                   flask_worker_class=args.flask_worker_class,
                   fastapi_workers=args.fastapi_workers,
                   fastapi_threads=args.fastapi_threads, fastapi_pool=args.fastapi_pool,
                   grpc_workers=args.grpc_workers,
                   grpc_threads=args.grpc_threads, grpc_api=args.grpc_api,
                   rayserve_workers=args.rayserve_workers,
                   rayserve_threads=args.rayserve_threads,
                   lambda_memory_mb=args.lambda_memory_mb,
                   lambda_memory_sizes=args.lambda_memory_sizes,
                   lambda_concurrency=args.lambda_concurrency,
                   lambda_timeout_s=args.lambda_timeout, prices=load_prices(args.prices),
                   lambda_sandbox=args.lambda_sandbox, lambda_freeze=args.lambda_freeze,
                   lambda_platform_init_ms=(PLATFORM_INIT_MS if args.lambda_platform_init_ms
                                            is None else args.lambda_platform_init_ms),
                   notes=tuple(notes), trials=args.trials, slo=args.slo or {},
                   slo_p99_ms=(args.slo or {}).get("p99", scenario.slo_p99_ms),
                   calibration=calibration, calibration_note=calibration_note,
                   monthly_requests=args.monthly_requests, endpoints=args.endpoints,
                   loadgen_workers=args.loadgen_workers, docker=docker,
                   remote_workers=args.loadgen_remote_workers,
                   limits=codec.Limits(max_body_bytes=args.max_body_bytes,
                                       max_batch=args.max_batch),
                   loadgen_master=args.loadgen_master)
    loadgen = SimulatedLoadGenerator() if simulated else LocustLoadGenerator()
    names = checks.result_names
    load_s = checks.load_s * args.trials
    print(f"deploybench: {', '.join(names)} serving {label(args.bundle)}, scenario "
          f"{scenario.name} (at least ~{load_s:.0f} s of load), "
          f"{cpus.describe()}; results in {out_dir}", file=sys.stderr)
    started = time.monotonic()
    with ConsoleObserver() as observer:
        run = Runner(plan, loadgen, observer, checked=checked).run()
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
