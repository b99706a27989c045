"""Cross-check deploybench's gRPC figures against a plain threaded gRPC client.

    .venv/bin/python benchmarks/grpc_crosscheck.py [--bundle digits] [--users 16]
                                                   [--duration 10] [--warmup 3] [--repeat 3]

Starts one gRPC target pinned to the target CPUs, then alternates a deploybench (Locust,
gevent gRPC, one channel per user) stage and a plain client: N OS threads, one channel
each, closed loop, in a process pinned to the load-generator CPUs, sending the same
serialised requests. Both also run against the Flask target for the same N, so one run
gives gRPC and Flask side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.cpus import plan_cpus
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.launch import LoadJob, LocustLoadGenerator
from scenarios.catalogue import Scenario
from targets.bundles.resolve import get_bundle
from targets.flask.target import FlaskTarget
from targets.grpc.client import CHANNEL_OPTIONS
from targets.grpc.target import GrpcTarget


def plain_client(address: str, method: str, messages: list[bytes], users: int,
                 warmup_s: float, duration_s: float) -> dict[str, float]:
    """N threads, one channel each, closed loop; counts calls completed in the window."""
    import grpc

    counts = [0] * users
    errors = [0] * users
    window = {"start": float("inf"), "end": 0.0}
    stop = threading.Event()

    def worker(i: int) -> None:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        call = channel.unary_unary(method)
        n = i
        while not stop.is_set():
            sent = time.monotonic()
            try:
                call(messages[n % len(messages)], timeout=30)
                ok = True
            except grpc.RpcError:
                ok = False
            n += 1
            if window["start"] <= sent < window["end"]:
                counts[i] += ok
                errors[i] += not ok
        channel.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    time.sleep(warmup_s)
    window["end"] = float("inf")
    window["start"] = time.monotonic()
    time.sleep(duration_s)
    window["end"] = time.monotonic()
    stop.set()
    for t in threads:
        t.join()
    span = window["end"] - window["start"]
    return {"rps": sum(counts) / span, "errors": float(sum(errors))}


def run_plain(args: argparse.Namespace, spec: dict[str, object], users: int,
              loadgen: list[int]) -> dict[str, float]:
    """The plain client in its own process, pinned like the load generator."""
    payload = json.dumps({"address": spec["address"], "method": spec["method"],
                          "messages": spec["messages_b64"], "users": users,
                          "warmup": args.warmup, "duration": args.duration,
                          "cpus": loadgen})
    code = ("import base64, json, os, sys; from benchmarks.grpc_crosscheck import plain_client;"
            "a = json.loads(sys.stdin.read()); os.sched_setaffinity(0, a['cpus']);"
            "print(json.dumps(plain_client(a['address'], a['method'],"
            " [base64.b64decode(m) for m in a['messages']], a['users'], a['warmup'],"
            " a['duration'])))")
    done = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="digits")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grpc-threads", type=int, default=None)
    args = parser.parse_args()
    cpus = plan_cpus(None, None)
    bundle = get_bundle(args.bundle)
    bundle.prepare()
    examples = bundle.example_requests()
    print(f"{cpus.describe()}; bundle {args.bundle}; {args.users} users; {args.warmup:.0f} s "
          f"warm-up + {args.duration:.0f} s per run, {args.repeat} runs", flush=True)
    scenario = Scenario(name="crosscheck", description="", concurrency=(args.users,),
                        stability_windows=1, max_windows=1,
                        warmup_s=args.warmup, window_s=args.duration, cooldown_s=0.5,
                        drain_timeout_s=30, sha256="", path="")
    results: dict[str, list[float]] = {"grpc deploybench": [], "grpc plain client": [],
                                        "flask deploybench": []}
    lg_cpu: dict[str, list[float]] = {"grpc": [], "flask": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def stage(name: str, spec: object, i: int) -> float:
            job = LoadJob(target=name, spec=spec, scenario=scenario,  # type: ignore[arg-type]
                          loadgen_cpus=list(cpus.loadgen), work_dir=work / f"{name}-{i}",
                          log_path=work / "lg.log")
            load = LocustLoadGenerator().run(job, lambda e: None).checked()
            s = summarize_stage(load.stages[0])
            lg_cpu[name].append(s["loadgen_cpu_percent"] or 0.0)
            return s["rps"]

        with GrpcTarget(args.bundle, list(cpus.target), "grpc",
                        threads=args.grpc_threads) as target:
            spec = target.load_spec(examples)
            for i in range(args.repeat):
                results["grpc deploybench"].append(stage("grpc", spec, i))
                plain = run_plain(args, dict(spec), args.users, list(cpus.loadgen))
                results["grpc plain client"].append(plain["rps"])
                print(f"  run {i + 1}: deploybench {results['grpc deploybench'][-1]:,.0f}, "
                      f"plain {plain['rps']:,.0f} req/s", flush=True)
        with FlaskTarget(args.bundle, list(cpus.target), "json") as flask:
            spec = flask.load_spec(examples)
            for i in range(args.repeat):
                results["flask deploybench"].append(stage("flask", spec, i))
    print()
    for name, values in results.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<20} {statistics.mean(values):>8,.0f} +- {sd:>5,.0f} req/s  "
              f"({', '.join(f'{v:,.0f}' for v in values)})")
    ratio = [a / b for a, b in zip(results["grpc deploybench"], results["grpc plain client"],
                                   strict=True)]
    print(f"grpc deploybench / plain client: {statistics.mean(ratio):.2f}")
    grpc_rps = statistics.mean(results["grpc deploybench"])
    flask_rps = statistics.mean(results["flask deploybench"])
    print(f"grpc / flask (deploybench):       {grpc_rps / flask_rps:.2f}")
    for name, values in lg_cpu.items():
        print(f"load generator CPU during {name} stages: {statistics.mean(values):.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
