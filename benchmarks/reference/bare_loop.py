"""The model called in a bare loop: the ceiling of any deployment of it on one CPU.

    python benchmarks/reference/bare_loop.py --cpus 1 --seconds 4 [--bundle digits]

Pins itself to ``--cpus``, sets one torch thread, loads the bundle, warms up, then calls
``serve_batch`` on the bundle's examples in turn for ``--seconds``, timing each call with
``perf_counter_ns``. Prints one JSON line: calls per second and the p50 of one call (ms).
``benchmarks/fidelity.py`` compares deploybench's in-process figures with it.
"""

from __future__ import annotations

import json
import time

from pinned import load_bundle, parser, pin


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--seconds", type=float, default=4.0)
    args = options.parse_args()
    pin(args.cpus)

    import numpy as np

    from targets.bundles.protocol import serve_batch

    bundle = load_bundle(args.bundle)
    examples = bundle.example_requests()
    n = len(examples)
    warm_until = time.perf_counter() + 1.0
    k = 0
    while time.perf_counter() < warm_until:
        serve_batch(bundle, examples[k % n])
        k += 1
    took = []
    clock = time.perf_counter_ns
    started = clock()
    end = started + int(args.seconds * 1e9)
    k = 0
    while (t0 := clock()) < end:
        serve_batch(bundle, examples[k % n])
        took.append(clock() - t0)
        k += 1
    elapsed = (clock() - started) / 1e9
    print(json.dumps({"calls_per_s": k / elapsed, "p50_ms": float(np.median(took)) / 1e6,
                      "calls": k}))


if __name__ == "__main__":
    main()
