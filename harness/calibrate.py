"""``deploybench calibrate``: the harness's own ceiling per protocol on this machine.

Each protocol's *null target* answers a fixed prediction without a model (the ``null``
bundle), so what limits its throughput is the harness: the load generator, the protocol's
client and server machinery, and for Lambda the emulator and the runtime client. Measured:

* ``http``: the null HTTP server (asyncio, prebuilt answers, far cheaper per request than
  the load generator's HTTP user), so the figure is the load generator's HTTP ceiling;
* ``grpc``: the project's gRPC server serving the null bundle (the gRPC Python server is
  the cheapest gRPC server there is here, so the figure is the lower of Locust's gRPC
  user's ceiling and that server's);
* ``lambda``: the Lambda emulator's Function URL front door with the null bundle behind
  awslambdaric (the emulation's own ceiling);
* ``inprocess``: the null bundle called by the in-process driver's handler threads.

Each row says which side was busy at the ceiling. A later ``run`` on the same machine and
CPU split reads the result and flags any target whose throughput came within 80% of its
protocol's ceiling: there, the harness, not the deployment, may be the limit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import metadata
from harness.results import atomic_write_text
from reports.runblocks import Calibration, CalibrationMachine, Ceiling
from reports.schema import RunDoc
from targets import registry
from targets.files import cache_dir

CALIBRATION_FILE = "calibration.json"
NULL_BUNDLE = "null"
PROTOCOLS = ("http", "grpc", "lambda", "inprocess")
#: A side busier than this (% of its CPUs) is what limited the ceiling.
SATURATED_PERCENT = 85.0
#: Null Lambda environments at once (each a Python process, no model).
LAMBDA_CONCURRENCY = 32


#: Each protocol's null target: the deployment that serves the null bundle, and its
#: options beyond the defaults (field: value).
NULL_TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "http": ("null-http", {}),
    "grpc": ("grpc", {}),
    "lambda": ("lambda", {"concurrency": LAMBDA_CONCURRENCY}),
    "inprocess": ("inprocess", {}),
}


def make_null_target(name: str, plan: Any, encoding: str, log_dir: Path) -> Any:
    """The Runner's target factory for calibration: ``null-http``, ``null-grpc``, ..."""
    protocol = name.removeprefix("null-")
    if protocol not in NULL_TARGETS:
        raise ValueError(f"unknown protocol {protocol!r}")
    deployment, options = NULL_TARGETS[protocol]
    found = registry.find(deployment)
    assert found is not None, deployment
    setup = registry.Setup(name=name, bundle=NULL_BUNDLE, cpus=tuple(plan.cpus.target),
                           encoding=encoding, log_dir=log_dir)
    return registry.build(found, setup, found.options(**options))


def fingerprint(target_cpus: list[int], loadgen_cpus: list[int]) -> CalibrationMachine:
    """What must match for a calibration to apply to a run."""
    host = metadata.collect_host()
    cpu = metadata.collect_cpu()
    versions = metadata.collect_versions()
    return {"hostname": host.get("hostname"), "cpu_model": cpu.get("cpu_model"),
            "cpu_count": cpu.get("cpu_count"), "target_cpus": sorted(target_cpus),
            "loadgen_cpus": sorted(loadgen_cpus), "deploybench": versions.get("deploybench"),
            "locust": versions.get("locust")}


def ceilings(run: RunDoc) -> dict[str, Ceiling]:
    """Per protocol: its null target's highest throughput without failures, and what
    limited it."""
    out: dict[str, Ceiling] = {}
    for t in run["targets"]:
        protocol = t["name"].removeprefix("null-")
        stages = [s for s in t["stages"] if s["latency_ms"] is not None]
        if t["status"] != "ok" or not stages:
            out[protocol] = {"error": t["error"] or "no successful requests"}
            continue
        # At the ceiling the load generator is meant to be saturated: that reason is the
        # point here, not a fault. Stages with failures do not count.
        clean = [s for s in stages if s["errors"] == 0] or stages
        best = max(clean, key=lambda s: s["rps"])
        closed = [s for s in stages if s["concurrency"] is not None] or stages
        first = min(closed, key=lambda s: s["concurrency"] or 0)
        loadgen = best["loadgen_cpu_percent"] or 0.0
        server = best["target_cpu_percent"] or 0.0
        busy = [name for name, cpu in (("load generator", loadgen), ("null server", server))
                if cpu >= SATURATED_PERCENT]
        limited_by = " and ".join(busy) or "neither side saturated (latency-bound)"
        reasons = [r for r in best["reasons"] if not r.startswith("load generator CPU")]
        first_latency = first["latency_ms"]
        out[protocol] = {
            "rps": best["rps"], "users": best["concurrency"], "valid": not reasons,
            "reasons": reasons,
            "p50_ms_at_1_user": first_latency["p50"] if first_latency else None,
            "loadgen_cpu_percent": loadgen, "target_cpu_percent": server,
            "limited_by": limited_by,
        }
    return out


def save(run: RunDoc, run_dir: Path, target_cpus: list[int], loadgen_cpus: list[int],
         path: Path | None = None) -> Path:
    path = path or cache_dir() / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"created_at": run["metadata"].get("started_at"), "run_dir": str(run_dir),
           "machine": fingerprint(target_cpus, loadgen_cpus), "ceilings": ceilings(run)}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return path


def load_for(target_cpus: list[int], loadgen_cpus: list[int], path: Path | None = None
             ) -> tuple[Calibration | None, str | None]:
    """The calibration that applies to a run on these CPUs, or None and why not."""
    path = path or cache_dir() / CALIBRATION_FILE
    if not path.exists():
        return None, "no calibration on this machine: run `deploybench calibrate`"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"{path} is unreadable ({exc}): run `deploybench calibrate` again"
    here = fingerprint(target_cpus, loadgen_cpus)
    differ = [k for k, v in here.items() if doc.get("machine", {}).get(k) != v]
    if differ:
        return None, (f"the calibration in {path} was measured with a different "
                      f"{', '.join(differ)}: run `deploybench calibrate` again")
    return doc, None
