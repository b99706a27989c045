"""What dynamic batching buys the Flask server, per setting: the figures behind
targets.batching's DEFAULT_MAX_BATCH and DEFAULT_MAX_WAIT_MS.

    .venv/bin/python benchmarks/batching_defaults.py [--bundle digits] [--seconds 2]
        [--rounds 6] [--clients 16,1] [--specs off,max_batch=16,max_wait_ms=0;...]

Starts one single-worker Flask server per setting (all pinned to the same target CPU,
only one loaded at a time), then, round after round, drives each in turn with N closed-loop
clients (threads pinned to the load-generator CPUs, one keep-alive connection each,
binary encoding, single-example requests) for a few seconds, and prints throughput and
the latency p50/p99 of each (setting, N) over all rounds, with the median over rounds of
its throughput relative to the first setting's in the same round. Alternating the
settings within each round spreads a noisy machine's slow moments over all of them.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np

from harness.cpus import plan_cpus
from harness.loadgen.analysis.latency import nearest_rank
from targets.batching import BatchingSpec
from targets.bundles.resolve import get_bundle
from targets.flask.target import FlaskTarget

#: The settings measured for the defaults' comment in targets/batching.py.
DEFAULT_SPECS = ("off;max_batch=8,max_wait_ms=0;max_batch=16,max_wait_ms=0;"
                 "max_batch=32,max_wait_ms=0;max_batch=16,max_wait_ms=1;"
                 "max_batch=16,max_wait_ms=2")


def closed_loop(target: FlaskTarget, examples: list[np.ndarray], clients: int,
                seconds: float) -> list[float]:
    """``clients`` threads, each sending one request after another for half a second of
    warm-up and then ``seconds``: the latencies (ms) of the requests sent in the
    measured window."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    deadline, warm_end = [0.0], [0.0]

    def client(index: int) -> None:
        own = target.make_client()
        try:
            own.predict(examples[index % len(examples)])  # connect before the window
            start.wait()
            mine, i = latencies[index], index
            while True:
                sent = time.perf_counter()
                if sent >= deadline[0]:
                    break
                own.predict(examples[i % len(examples)])
                if sent >= warm_end[0]:
                    mine.append((time.perf_counter() - sent) * 1000)
                i += clients
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    warm_end[0] = time.perf_counter() + 0.5
    deadline[0] = warm_end[0] + seconds
    start.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [lat for per in latencies for lat in per]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="digits")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clients", default="16,1")
    parser.add_argument("--specs", default=DEFAULT_SPECS,
                        help="settings separated by ';' ('off': no batching)")
    args = parser.parse_args()
    cpus = plan_cpus(None, None)
    os.sched_setaffinity(0, cpus.loadgen)
    bundle = get_bundle(args.bundle)
    bundle.prepare()
    examples = bundle.example_requests()
    specs: dict[str, BatchingSpec | None] = {
        text: None if text == "off" else BatchingSpec.parse(text)
        for text in args.specs.split(";")}
    levels = [int(c) for c in args.clients.split(",")]
    latencies: dict[tuple[str, int], list[float]] = {(s, c): [] for s in specs for c in levels}
    # Requests answered per round, to compare settings within a round.
    counts: dict[tuple[str, int], list[int]] = {(s, c): [] for s in specs for c in levels}
    targets = {text: FlaskTarget(args.bundle, list(cpus.target), "binary", workers=1,
                                 batching=spec) for text, spec in specs.items()}
    print(f"{cpus.describe()}; {args.bundle}, {args.rounds} rounds x {args.seconds:g} s per "
          f"(setting, clients)")
    try:
        for target in targets.values():
            target.start()
        for _ in range(args.rounds):
            for clients in levels:
                for text, target in targets.items():
                    done = closed_loop(target, examples, clients, args.seconds)
                    latencies[(text, clients)] += done
                    counts[(text, clients)].append(len(done))
    finally:
        for target in targets.values():
            target.stop()
    first = next(iter(specs))
    print(f"{'setting':32} {'clients':>7} {'req/s':>8} {'vs ' + first:>9} {'p50 ms':>7} "
          f"{'p99 ms':>7}")
    for clients in levels:
        for text in specs:
            lat = np.sort(np.array(latencies[(text, clients)]))
            ratio = np.median(np.array(counts[(text, clients)])
                              / np.maximum(1, np.array(counts[(first, clients)])))
            print(f"{text:32} {clients:7d} {len(lat) / (args.seconds * args.rounds):8.0f} "
                  f"{ratio:9.2f} {nearest_rank(lat, .5):7.2f} {nearest_rank(lat, .99):7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
