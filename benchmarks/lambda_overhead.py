"""What the Lambda emulation adds to a request, and what a cold start costs.

    .venv/bin/python benchmarks/lambda_overhead.py [--requests 2000] [--bundles digits,vision]

For each bundle: starts the emulator pinned to the target CPUs, then from a client
pinned to the load-generator CPUs sends requests one at a time through the Function URL
(keep-alive, TCP_NODELAY on both sides). Each answer carries the handler's own time
(``x-deploybench-handler-ms``), so the platform's overhead per warm request is the client's
latency minus the handler's: front door, event JSON, Runtime API hand-off to awslambdaric,
its response post, and the mapping back. Then 5 cold starts: every environment killed,
one request timed, with the Init Duration the emulator measured.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import numpy as np

from harness.cpus import plan_cpus
from harness.loadgen.analysis.latency import nearest_rank
from targets.awslambda.handler import HANDLER_TIME_HEADER
from targets.awslambda.target import LambdaTarget
from targets.bundles.resolve import get_bundle
from targets.wire import codec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--bundles", default="digits,vision")
    parser.add_argument("--cold-starts", type=int, default=5)
    args = parser.parse_args()
    cpus = plan_cpus(None, None)
    os.sched_setaffinity(0, cpus.loadgen)
    print(f"{cpus.describe()}; {args.requests} sequential warm requests per bundle")
    for name in args.bundles.split(","):
        bundle = get_bundle(name)
        bundle.prepare()
        example = bundle.example_requests()[0]
        body, headers = codec.encode_request(example, bundle.default_encoding)
        with LambdaTarget(name, list(cpus.target), bundle.default_encoding,
                          concurrency=1) as target:
            assert target._client is not None
            client = target._client
            n = args.requests if name == "digits" else max(50, args.requests // 20)
            for _ in range(20):  # warm-up: the cold start and first calls
                client.request_full("POST", "/predict", body, headers)
            conn = client._conn
            if conn is not None and conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            total, handler = [], []
            for _ in range(n):
                started = time.perf_counter()
                status, _, reply = client.request_full("POST", "/predict", body, headers)
                total.append((time.perf_counter() - started) * 1000)
                assert status == 200
                handler.append(float(reply[HANDLER_TIME_HEADER]))
            overhead = np.sort(np.array(total) - np.array(handler))
            t, h = np.sort(total), np.sort(handler)
            print(f"\n{name}: warm, {n} requests (ms)        p50      p99")
            print(f"  client latency              {nearest_rank(t, .5):8.3f} "
                  f"{nearest_rank(t, .99):8.3f}")
            print(f"  handler's own time          {nearest_rank(h, .5):8.3f} "
                  f"{nearest_rank(h, .99):8.3f}")
            print(f"  platform overhead           {nearest_rank(overhead, .5):8.3f} "
                  f"{nearest_rank(overhead, .99):8.3f}")
            colds = [target.cold_start(example) for _ in range(args.cold_starts)]
            totals = sorted(c["total_s"] * 1000 for c in colds)
            inits = sorted(c["init_ms"] for c in colds)
            print(f"  cold start, {len(colds)} runs: request {totals[len(totals) // 2]:.0f} ms "
                  f"p50 ({totals[0]:.0f} .. {totals[-1]:.0f}), Init Duration "
                  f"{inits[len(inits) // 2]:.0f} ms p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
