"""The other ``deploybench`` commands: calibrate, report, upgrade, compare, serve,
loadgen-worker, scenarios and bundles."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness import calibrate
from harness.console import ConsoleObserver
from harness.cpus import plan_cpus
from harness.errors import UserError
from harness.loadgen.launch import LocustLoadGenerator
from harness.loadgen.swarm.messages import parse_master
from harness.loadgen.swarm.worker import worker_main
from harness.results import atomic_write_text, choose_out_dir, write_run
from harness.runner import Runner, RunPlan
from reports import compare
from reports.console import print_run
from reports.pricing import load_prices
from reports.render import render_run_dir
from reports.schema import RUN_FILE, SCHEMA_VERSION, load_run
from scenarios import catalogue
from targets import bundles, registry
from targets.bundles.protocol import BUILTIN_BUNDLES, serve_batch
from targets.bundles.resolve import get_bundle

if TYPE_CHECKING:
    from scenarios.catalogue import Scenario


#: `compare --fail-on`: a significant change beyond a threshold, or a target failed in B.
EXIT_REGRESSION = 3


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure the harness's ceiling per protocol against null targets, and keep it."""
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


def cmd_report(args: argparse.Namespace) -> int:
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
    """``deploybench serve NAME``: the deployment's server entry point, in this process."""

    deployment = registry.find(args.target)
    if deployment is None or deployment.server is None:
        raise UserError(f"{args.target} has no server to run")
    missing = deployment.missing()
    if missing:
        raise UserError(missing)
    code = importlib.import_module(deployment.server).serve(args)
    return int(code or 0)


def cmd_loadgen_worker(args: argparse.Namespace) -> int:
    """Serve a run's masters from this machine: one job per target, until the last."""
    try:
        parse_master(args.master)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"loadgen-worker: serving the run at {args.master} (Ctrl-C to stop)",
          file=sys.stderr)
    return worker_main(args.master, list(args.cpus) if args.cpus else None, local=False)


def cmd_scenarios(args: argparse.Namespace) -> int:
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
    if sc.timeline:
        parts.append("timeline " + "→".join(str(s.users) for s in sc.timeline) + " users, "
                     f"{sum(s.seconds for s in sc.timeline):g} s")
    if sc.cold_starts:
        parts.append(f"{sc.cold_starts} cold starts")
    if sc.redeploys:
        parts.append(f"{sc.redeploys} redeploy{'s' if sc.redeploys != 1 else ''}")
    return ", ".join(parts)


def cmd_init_bundle(args: argparse.Namespace) -> int:
    """Write NAME.py from the commented template (a working example to replace)."""
    name = args.name
    if not name.isidentifier():
        raise UserError(f"bundle name {name!r}: use a Python identifier (letters, digits, _)")
    path = args.dir / f"{name}.py"
    if path.exists():
        raise UserError(f"{path} exists; choose another NAME or --dir (nothing overwritten)")
    # Read, not imported: the template imports torch at its top, as a bundle file does.
    text = (Path(bundles.__file__).parent / "template.py").read_text()
    text = text.replace('name = "template"', f'name = "{name}"').replace("NAME.py", path.name)
    args.dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}: a working example bundle (iris flowers) to make yours. Try it:\n"
          f"  deploybench run --bundle {path} --targets inprocess,flask --scenario smoke")
    return 0


def cmd_bundles(args: argparse.Namespace) -> int:
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
