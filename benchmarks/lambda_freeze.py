"""What freezing idle Lambda environments costs a warm invocation.

    .venv/bin/python benchmarks/lambda_freeze.py [--rounds 3] [--invocations 300]
        [--bundle digits] [--gap-ms 0] [--freeze-after-ms 10]

Starts the emulator twice per round, ``--freeze`` and ``--no-freeze`` alternately (so
both see the machine in the same state), pinned to the target CPUs. From a client pinned
to the load-generator CPUs, one user sends ``--invocations`` warm invocations one after
another through the Invoke API (keep-alive), ``--gap-ms`` apart. An environment that
polled for its next event and found none for ``--freeze-after-ms`` was frozen, and is
thawed first; back to back none is frozen (a gap longer than ``--freeze-after-ms`` makes
every one a thawed one; ``--freeze-after-ms 0 --gap-ms 0``: AWS's immediate freeze, where
the next event often finds the runtime still running). Prints the warm latency p50/p99
with and without, their ratio, the latency of the invocations that were thawed and of
those that were not, and the emulator's own thaw times (``thaw_ms`` in its records).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.cpus import plan_cpus
from harness.loadgen.analysis.latency import nearest_rank
from targets.bundles.resolve import get_bundle
from targets.errors import TargetError
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import free_port
from targets.wire.httpclient import HttpClient

INVOKE = "/2015-03-31/functions/function/invocations"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


WARMUP = 11  # the cold start, then warm-up


def run_once(bundle: str, freeze: bool, cpus: list[int], invocations: int,
             payload: bytes, records: Path, gap_s: float,
             freeze_after_ms: float = 10.0) -> list[float]:
    """Warm latencies (ms) of ``invocations`` sequential invocations, after a cold one
    and 10 warm-up ones."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "targets.awslambda.server", "--bundle", bundle,
         "--port", str(port), "--cpus", format_cpus(cpus), "--concurrency", "1",
         "--freeze" if freeze else "--no-freeze", "--freeze-after-ms", str(freeze_after_ms),
         "--records", str(records)],
        cwd=SOURCE_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = HttpClient("127.0.0.1", port, timeout_s=120)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.request("GET", "/_deploybench/health")[0] == 200:
                    break
            except TargetError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("error: the emulator did not start")
            time.sleep(0.2)
        headers = {"Content-Type": "application/json"}
        for _ in range(WARMUP):
            status, body = client.request("POST", INVOKE, payload, headers)
            if status != 200:
                raise SystemExit(f"error: the emulator answered {status}: {body[:200]!r}")
        latencies = []
        for _ in range(invocations):
            if gap_s:
                time.sleep(gap_s)
            started = time.perf_counter()
            client.request("POST", INVOKE, payload, headers)
            latencies.append((time.perf_counter() - started) * 1000.0)
        return latencies
    finally:
        client.close()
        proc.terminate()  # by its own PID
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--invocations", type=int, default=300)
    parser.add_argument("--bundle", default="digits")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="pause between invocations (default 0: back to back)")
    parser.add_argument("--freeze-after-ms", type=float, default=10.0,
                        help="the emulator's --freeze-after-ms (default 10)")
    args = parser.parse_args()
    cpus = plan_cpus(None, None)
    os.sched_setaffinity(0, cpus.loadgen)
    bundle = get_bundle(args.bundle)
    bundle.prepare()
    example = bundle.example_requests()[0]
    payload = json.dumps({"inputs": np.asarray(example).tolist()}).encode()
    print(f"{cpus.describe()}; {args.rounds} rounds x {args.invocations} warm invocations "
          f"at 1 user, {args.gap_ms:g} ms apart, bundle {args.bundle}, through the Invoke API")
    latencies: dict[bool, list[float]] = {True: [], False: []}
    thaws: list[float] = []
    #: --freeze latencies of the invocations that were thawed first, and of the others.
    split: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for freeze in (True, False) if r % 2 == 0 else (False, True):
                records = Path(tmp) / f"records-{r}-{freeze}.jsonl"
                measured = run_once(args.bundle, freeze, list(cpus.target),
                                    args.invocations, payload, records, args.gap_ms / 1000,
                                    args.freeze_after_ms)
                latencies[freeze] += measured
                if freeze:  # one user: the records are in the order of the invocations
                    rows = [json.loads(line) for line in records.read_text().splitlines()]
                    for latency, rec in zip(measured, rows[WARMUP:], strict=True):
                        split[rec.get("thaw_ms") is not None].append(latency)
                        if rec.get("thaw_ms") is not None:
                            thaws.append(rec["thaw_ms"])
    print(f"\nwarm invocation latency (ms)   {'p50':>8} {'p99':>8}")
    p = {}
    for freeze in (False, True):
        ordered = np.sort(np.array(latencies[freeze]))
        p[freeze] = (nearest_rank(ordered, .5), nearest_rank(ordered, .99))
        print(f"  {'--freeze' if freeze else '--no-freeze':<28} {p[freeze][0]:8.3f} "
              f"{p[freeze][1]:8.3f}")
    print(f"  ratio freeze / no-freeze       {p[True][0] / p[False][0]:8.3f} "
          f"{p[True][1] / p[False][1]:8.3f}")
    for thawed in (True, False):
        if split[thawed]:
            ordered = np.sort(np.array(split[thawed]))
            label = "--freeze, thawed first" if thawed else "--freeze, found running"
            print(f"  {label:<28} {nearest_rank(ordered, .5):8.3f} "
                  f"{nearest_rank(ordered, .99):8.3f}  ({len(ordered)} invocations)")
    if thaws:
        ordered = np.sort(np.array(thaws))
        print(f"  thaw (emulator's thaw_ms)      {nearest_rank(ordered, .5):8.3f} "
              f"{nearest_rank(ordered, .99):8.3f}  ({len(thaws)} thaws)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
