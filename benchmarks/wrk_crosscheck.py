"""Cross-check deploybench's Flask figures against wrk on the same running server.

    .venv/bin/python benchmarks/wrk_crosscheck.py [--bundle digits] [--users 1,4,16]
                                                  [--duration 10] [--warmup 3] [--repeat 3]

Starts one Flask target pinned to the target CPUs, then for each concurrency runs a
deploybench (Locust) stage and a wrk run with as many connections, both pinned to the
load-generator CPUs, sending the same request body. Prints req/s and p50/p99 from each and
their ratio. Needs wrk on PATH (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.cpus import plan_cpus
from harness.loadgen import LoadJob, LocustLoadGenerator
from harness.stats import summarize_stage
from scenarios.catalogue import Scenario
from targets.bundle import get_bundle
from targets.cpuset import format_cpus
from targets.flask.target import FlaskTarget

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk_lua(body: bytes, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode('latin-1'))}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def parse_wrk(text: str) -> dict[str, float]:
    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            out[f"p{pct}"] = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["errors"] = float(errors.group(1)) if errors else 0.0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="digits")
    parser.add_argument("--users", default="1,4,16")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternate deploybench and wrk this many times per level, so "
                             "drift on a shared machine hits both alike")
    parser.add_argument("--encoding", default=None)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: wrk is not on PATH. Install it (Debian: apt-get install wrk)",
              file=sys.stderr)
        return 1
    users = [int(u) for u in args.users.split(",")]
    cpus = plan_cpus(None, None)
    bundle = get_bundle(args.bundle)
    bundle.prepare()
    examples = bundle.example_requests()
    encoding = args.encoding or bundle.default_encoding
    print(f"{cpus.describe()}; bundle {args.bundle}, {encoding}; {args.warmup:.0f} s warm-up "
          f"+ {args.duration:.0f} s per run, {args.repeat} run(s) each", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            FlaskTarget(args.bundle, list(cpus.target), encoding) as target:
        spec = target.load_spec(examples)
        first = spec["payloads"][0]
        script = Path(tmp) / "post.lua"
        # wrk sends one body; deploybench cycles through all examples (the same size for
        # digits; cycling bodies in wrk made no difference to its rate here).
        script.write_text(wrk_lua(first["body"], first["headers"]))
        taskset = ["taskset", "-c", format_cpus(cpus.loadgen)]
        for n in users:
            scenario = Scenario(name="crosscheck", description="", concurrency=(n,),
                                stability_windows=1, max_windows=1,
                                warmup_s=args.warmup, window_s=args.duration,
                                cooldown_s=0.5, drain_timeout_s=30, sha256="", path="")
            base = [wrk, "-t1", f"-c{n}", "-s", str(script)]
            for attempt in range(args.repeat):
                job = LoadJob(target="flask", spec=spec, scenario=scenario,
                              loadgen_cpus=list(cpus.loadgen),
                              work_dir=Path(tmp) / f"work-{n}-{attempt}",
                              log_path=Path(tmp) / "lg.log")
                load = LocustLoadGenerator().run(job, lambda e: None).checked()
                stage = summarize_stage(load.stages[0])
                subprocess.run([*taskset, *base, f"-d{args.warmup:.0f}s",
                                target.url + "/predict"],
                               capture_output=True, check=True)  # wrk's warm-up, discarded
                done = subprocess.run([*taskset, *base, f"-d{args.duration:.0f}s", "--latency",
                                       target.url + "/predict"],
                                      capture_output=True, text=True, check=True)
                w = parse_wrk(done.stdout)
                lat = stage["latency_ms"] or {"p50": float("nan"), "p99": float("nan")}
                rows.append((n, stage["rps"], w["rps"], lat["p50"], w.get("p50"), lat["p99"],
                             w.get("p99"), stage["errors"], w["errors"],
                             stage["loadgen_cpu_percent"]))
            print(f"  {n} users done", flush=True)
    print(f"\n{'users':>5} {'deploybench':>11} {'wrk':>8} {'ratio':>6} {'p50 db':>8} "
          f"{'p50 wrk':>8} {'p99 db':>8} {'p99 wrk':>8} {'errors':>9} {'lg CPU':>6}")
    for n, rps, wrps, p50, wp50, p99, wp99, err, werr, lg in rows:
        print(f"{n:>5} {rps:>11,.0f} {wrps:>8,.0f} {rps / wrps:>6.2f} {p50:>8.3f} "
              f"{wp50 or float('nan'):>8.3f} {p99:>8.3f} {wp99 or float('nan'):>8.3f} "
              f"{err:>4}/{werr:<4.0f} {lg or 0:>5.0f}%")
    if args.repeat > 1:
        print("\nratio of req/s, mean +- stdev over runs:")
        for n in users:
            ratios = [r[1] / r[2] for r in rows if r[0] == n]
            print(f"  {n:>4} users: {statistics.mean(ratios):.3f} +- "
                  f"{statistics.stdev(ratios):.3f} ({len(ratios)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
