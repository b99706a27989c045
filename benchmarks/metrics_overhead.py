"""What --metrics (and --log-predictions) costs a Flask request, end to end.

    .venv/bin/python benchmarks/metrics_overhead.py [--bundle digits] [--calls 2000]
        [--rounds 3] [--modes off,metrics,metrics+log]

The Flask target (gunicorn, one worker on one target CPU) is started once per mode; one
client on the load generator's CPUs sends single-example requests one after another
through its keep-alive connection. The rounds alternate the modes (every server stays up
meanwhile), so drift in the machine falls on each alike. Prints the median time per
request of each mode, and its ratio to monitoring off.

On a shared machine the round trips drift by more than monitoring costs, so it then
measures the monitoring's own work alone, in this process on one target CPU: a WSGI
app serving the ``null`` bundle (no model), plain and behind the metrics layer with the
Monitor's calls (multiprocess values, as in a server's worker), with and without logging
every request: microseconds per request that add to any bundle's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from harness.cpus import plan_cpus
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.flask.target import FlaskTarget
from targets.monitor import MULTIPROC_ENV, Monitor
from targets.monitorapp import MetricsWSGI
from targets.monitoring import Monitoring


def per_request_us(target: FlaskTarget, examples: list, calls: int) -> float:  # type: ignore[type-arg]
    started = time.perf_counter()
    for i in range(calls):
        target.predict(examples[i % len(examples)])
    return (time.perf_counter() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="digits")
    parser.add_argument("--calls", type=int, default=2000, help="requests per round and mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="off,metrics,metrics+log")
    args = parser.parse_args()
    cpus = plan_cpus(None, None)
    os.sched_setaffinity(0, cpus.loadgen)
    bundle = get_bundle(args.bundle)
    bundle.prepare()
    examples = bundle.example_requests()
    modes = args.modes.split(",")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="deploybench-metrics-bench-") as folder:
        targets = {mode: FlaskTarget(args.bundle, list(cpus.target[:1]), "json", workers=1,
                                     log_path=Path(folder) / mode / "server.log",
                                     monitoring=Monitoring.parse_mode(mode))
                   for mode in modes}
        try:
            for target in targets.values():
                target.log_path.parent.mkdir(parents=True)  # type: ignore[union-attr]
                target.start()
                per_request_us(target, examples, 200)  # warm-up
            for _ in range(args.rounds):
                for mode in modes:
                    times[mode].append(per_request_us(targets[mode], examples, args.calls))
        finally:
            for target in targets.values():
                target.stop()
    print(f"flask, 1 worker on CPU {cpus.target[0]}, bundle {args.bundle}; {args.rounds} "
          f"alternating rounds of {args.calls} sequential requests; median per request")
    base = statistics.median(times[modes[0]])
    for mode in modes:
        median = statistics.median(times[mode])
        rounds = " ".join(f"{t:.0f}" for t in times[mode])
        print(f"{mode:12} {median:8.0f} us  x{median / base:.3f}   (rounds: {rounds})")
    in_app(cpus.target[0], args.rounds)
    return 0


def in_app(cpu: int, rounds: int, calls: int = 20000) -> None:
    """The monitoring's own work per request, without a network or a model."""
    os.sched_setaffinity(0, [cpu])
    with tempfile.TemporaryDirectory(prefix="deploybench-metrics-bench-") as folder:
        os.environ[MULTIPROC_ENV] = folder  # before prometheus_client is imported
        bundle = get_bundle("null")
        bundle.load()
        example = bundle.example_requests()[0]
        metrics = Monitor(Monitoring(metrics=True), bundle)
        logged = Monitor(Monitoring(metrics=True, log_rate=1.0), bundle,
                         Path(folder) / "log")

        def app(serve):  # type: ignore[no-untyped-def]
            def wsgi(environ, start_response):  # type: ignore[no-untyped-def]
                serve(example)
                start_response("200 OK", [])
                return [b""]
            return wsgi

        ways = {"off": app(lambda x: serve_batch(bundle, x)),
                "metrics": MetricsWSGI(app(metrics.serve), metrics),
                "metrics+log": MetricsWSGI(app(logged.serve), logged)}
        environ = {"PATH_INFO": "/predict", "REQUEST_METHOD": "POST"}
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, wsgi in ways.items():
                started = time.perf_counter()
                for _ in range(calls):
                    wsgi(environ, lambda *a: None)
                times[way].append((time.perf_counter() - started) / calls * 1e6)
        logged.close()
    print(f"in the app alone (null bundle, CPU {cpu}, {calls} calls x {rounds} rounds; "
          "median per request, the background writer's own CPU not included):")
    base = statistics.median(times["off"])
    for way in ways:
        print(f"{way:12} {statistics.median(times[way]):8.2f} us  "
              f"(+{statistics.median(times[way]) - base:.2f} us)")


if __name__ == "__main__":
    raise SystemExit(main())
