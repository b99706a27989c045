"""The load generator's process: ``python -m harness.loadgen.driver PLAN.json``.

The orchestrator writes a plan (target load spec, stages, CPUs), starts this module in a
fresh process and reads back, from the plan's folder, ``result.json`` plus one
``stage-N.npz`` of raw samples per stage. Progress goes to stdout as JSON lines; Locust's
own logging goes to stderr. Exit codes: 0 done, 1 failed, 3 parity mismatch.

Two drivers share the stage loop (:mod:`harness.loadgen.stages`):

* a network target (HTTP, gRPC, Lambda) is driven by Locust. Locust monkey-patches
  gevent into the whole process on import, so this process pins itself to the
  load-generator CPUs *before* importing it, and nothing but the load generator runs here;
* the in-process target is driven by :mod:`harness.loadgen.embedded`: the application's own
  handler threads call the model, with no Locust and no gevent in the process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from harness.loadgen.protocol import EXIT_PARITY, RESULT_FILE, Plan

#: Protocols of targets served by another process, reached over the network.
SERVED = ("http", "grpc", "lambda-invoke")


def run(plan: Plan, out_dir: Path) -> dict[str, Any]:
    protocol = plan.spec["protocol"]
    if protocol == "inprocess":
        from harness.loadgen import embedded

        return embedded.run(plan, out_dir)
    if protocol not in SERVED:
        raise SystemExit(f"driver: unknown protocol {protocol!r}")
    workers = max(1, plan.loadgen_workers)
    if workers > 1 or plan.remote_workers:
        from harness.loadgen.swarm import master

        return master.run_master(plan, out_dir, workers)

    from harness.loadgen.swarm import local

    return local.run(plan, out_dir)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.loadgen.driver PLAN.json", file=sys.stderr)
        return 2
    from targets.runtimes.process import die_with_parent

    die_with_parent()
    plan_path = Path(args[0])
    plan = Plan.from_json(json.loads(plan_path.read_text()))
    os.sched_setaffinity(0, plan.loadgen_cpus)
    # The in-process model's threads use one torch thread each; set before torch loads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = plan_path.parent
    result = run(plan, out_dir)
    tmp = out_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out_dir / RESULT_FILE)
    if result.get("error") == "parity":
        return EXIT_PARITY
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
