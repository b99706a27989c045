"""What the batcher itself adds to a request that has no one to share a batch with.

    .venv/bin/python benchmarks/batcher_overhead.py [--calls 2000] [--rounds 7]

In one process pinned to one target CPU (as a server worker is), one caller sends
single-example requests one after another, alternating rounds of three ways a worker
can serve them: ``serve_batch(bundle, x)`` called directly; ``Batcher.predict(x)`` with
max_wait_ms=0, where a caller alone runs its request itself (the batcher's bookkeeping
only); and the same forced through the queue to the model thread and back (what a
request pays when the model is busy or the batcher waits: two thread wake-ups). For each
bundle it prints the median per-request time of each and the ratios to the direct call;
``null`` (no model) shows the batcher's absolute cost alone.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from harness.cpus import plan_cpus
from targets.batcher import Batcher
from targets.batching import BatchingSpec
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.entrypoint import set_torch_threads


def per_call_us(call: Callable[[np.ndarray], object], examples: list[np.ndarray],
                calls: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        call(examples[i % len(examples)])
    return (time.perf_counter() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and way")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bundles", default="null,digits")
    args = parser.parse_args()
    cpus = plan_cpus(None, None)
    os.sched_setaffinity(0, cpus.target[:1])
    os.environ["OMP_NUM_THREADS"] = "1"
    set_torch_threads(1)
    print(f"one caller, pinned to CPU {cpus.target[0]}; {args.rounds} alternating rounds of "
          f"{args.calls} single-example calls; median per call")
    print(f"{'bundle':8} {'direct us':>10} {'batcher us':>11} {'ratio':>6} "
          f"{'hand-off us':>12} {'ratio':>6}")
    for name in args.bundles.split(","):
        bundle = get_bundle(name)
        bundle.prepare()
        bundle.load()
        examples = bundle.example_requests()
        batcher = Batcher(bundle, BatchingSpec(max_batch=16, max_wait_ms=0))
        queued = Batcher(bundle, BatchingSpec(max_batch=16, max_wait_ms=0))
        queued._direct = False  # always through the queue, as when the model is busy

        try:
            ways: list[Callable[[np.ndarray], object]] = [
                functools.partial(serve_batch, bundle), batcher.predict, queued.predict]
            for call in ways:  # warm-up
                per_call_us(call, examples, max(100, args.calls // 10))
            times: list[list[float]] = [[] for _ in ways]
            for _ in range(args.rounds):
                for call, per_way in zip(ways, times, strict=True):
                    per_way.append(per_call_us(call, examples, args.calls))
        finally:
            batcher.close()
            queued.close()
        d, b, q = (statistics.median(t) for t in times)
        print(f"{name:8} {d:10.1f} {b:11.1f} {b / d:6.2f} {q:12.1f} {q / d:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
