"""Warnings a reader must see next to the numbers, each ending with what to do about it.

A closed set, checked from ``run.json`` alone. Per-stage verdicts (stability, too few
requests, a busy load generator, late sends, error rate) are listed apart, as INVALID
stages; these are the other things a reader must know.
"""

from __future__ import annotations

from reports import monitorcheck
from reports.format import fmt_cpus, fmt_ms, stage_load
from reports.runblocks import Ceiling
from reports.schema import RunDoc, TargetResult, deployment

#: Locust's req/s for the same window should agree with ours; beyond this, say so.
CROSSCHECK_TOLERANCE = 0.05
#: Which harness protocol each deployment is driven through (``deploybench calibrate``
#: measures each one's ceiling).
PROTOCOL_OF = {"inprocess": "inprocess", "flask": "http", "fastapi": "http", "grpc": "grpc",
               "rayserve": "http", "lambda": "lambda"}
#: A target at or above this share of its protocol's ceiling is flagged.
NEAR_CEILING = 0.80


def protocol_of(run: RunDoc, target: TargetResult) -> tuple[str | None, str | None]:
    """(the calibrated protocol a target is driven through, or None and why none applies).

    Built-in deployments by name; an ``--endpoint`` by its URL, which run.json records in
    ``metadata.endpoints`` (name -> URL): ``grpc://`` is gRPC, ``http://`` HTTP, a Lambda
    function (``lambda://``, ``arn:``) the Invoke API, which calibration does not measure.
    (None, None): a target no calibration is meant for (the test targets)."""
    name = deployment(target)
    if name in PROTOCOL_OF:
        return PROTOCOL_OF[name], None
    url = (run["metadata"].get("endpoints") or {}).get(name)
    if url is None:
        return None, None
    if url.startswith(("lambda://", "arn:")):
        return None, ("it is a Lambda function called through the Invoke API, a client "
                      "`deploybench calibrate` does not measure")
    return ("grpc" if url.startswith("grpc://") else "http"), None


def _unusable(ceiling: Ceiling) -> str | None:
    """Why a protocol's calibration is no ceiling, or None when it is one."""
    if not ceiling:
        return "the calibration has no figure for it"
    if ceiling.get("error"):
        return f"its null target failed ({ceiling['error']})"
    if not ceiling.get("valid", True):
        reasons = "; ".join(ceiling.get("reasons") or []) or "no reason recorded"
        return f"its best null-target stage was INVALID ({reasons})"
    limited_by = ceiling.get("limited_by")
    if limited_by is None:
        return "it does not record what limited it"
    if "saturated" in str(limited_by):  # "neither side saturated (latency-bound)"
        return (f"neither the load generator nor the null server was saturated at its best "
                f"stage ({ceiling.get('rps') or 0:,.0f} req/s, latency-bound), so that figure "
                "is no ceiling")
    if not ceiling.get("rps"):
        return "it records no throughput"
    return None


def near_ceiling(run: RunDoc) -> list[str]:
    """Targets whose throughput came within 80% of their protocol's measured ceiling."""
    calibration = run["metadata"].get("calibration")
    if not calibration:
        return []
    out = []
    for t in run["targets"]:
        protocol, _ = protocol_of(run, t)
        ceiling = calibration.get("ceilings", {}).get(protocol, {}) if protocol else {}
        # Only a real ceiling: a side was saturated, and the stage was otherwise VALID
        # (what is not one is said by unusable_calibrations).
        if not protocol or _unusable(ceiling) is not None:
            continue
        limit = ceiling["rps"]
        near = [s for s in t["stages"] if s["rps"] >= NEAR_CEILING * limit]
        if not near:
            continue
        top = max(near, key=lambda s: s["rps"])
        out.append(
            f"{t['name']} reached {top['rps']:,.0f} req/s at {stage_load(top)}, "
            f"{top['rps'] / limit:.0%} of the harness's own {protocol} ceiling on this "
            f"machine ({limit:,.0f} req/s against a null target, limited by the "
            f"{ceiling.get('limited_by')}; `deploybench calibrate` of "
            f"{calibration.get('created_at')}): the harness, not the deployment, may be the "
            "limit there. Compare deployments at lower load, or give the load generator "
            "more CPUs.")
    return out


def unusable_calibrations(run: RunDoc) -> list[str]:
    """One line per protocol (or uncalibrated endpoint) of the run's measured targets whose
    calibration could not be used, so the near-ceiling check above could not run."""
    calibration = run["metadata"].get("calibration")
    if not calibration:
        return _no_calibration(run)
    problems: dict[str, tuple[str, list[str]]] = {}
    for t in run["targets"]:
        if t["status"] != "ok" or not t["stages"]:
            continue
        protocol, why = protocol_of(run, t)
        if protocol is not None:
            why = _unusable(calibration.get("ceilings", {}).get(protocol) or {})
        if why is None:
            continue
        key = f"protocol {protocol}" if protocol else f"endpoint {deployment(t)}"
        problems.setdefault(key, (why, []))[1].append(t["name"])
    out = []
    for key, (why, names) in problems.items():
        if key.startswith("protocol "):
            what = (f"The calibration (`deploybench calibrate` of "
                    f"{calibration.get('created_at')}) for {key} could not be used")
            todo = (f"Run `deploybench calibrate --protocols {key.removeprefix('protocol ')}`"
                    " again on this machine before trusting the highest loads.")
        else:
            what = f"No calibration applies to {key}"
            todo = "Read its highest loads with the load generator's CPU figure beside them."
        out.append(f"{what}: {why}. So whether {', '.join(names)} came near the harness's "
                   f"own ceiling is unknown. {todo}")
    return out


def _no_calibration(run: RunDoc) -> list[str]:
    """The ceiling check could not run at all: no calibration applied to this run (none on
    the machine, or one for other CPUs or versions), said with the command that makes one."""
    measured = sorted({p for t in run["targets"] if t["status"] == "ok" and t["stages"]
                       for p in [protocol_of(run, t)[0]] if p is not None})
    if not measured:  # test targets, or nothing measured: no check was due
        return []
    meta = run["metadata"]
    why = meta.get("calibration_note") or "no calibration recorded"
    cpus = ""
    if meta.get("target_cpus") and meta.get("loadgen_cpus"):
        cpus = (f" --target-cpus {fmt_cpus(meta['target_cpus'])} --loadgen-cpus "
                f"{fmt_cpus(meta['loadgen_cpus'])}")
    return [f"No calibration of the harness applied to this run ({why.split(':')[0]}), so "
            f"whether the highest loads came near the load generator's own ceiling was not "
            f"checked ({', '.join(measured)}). Run `deploybench calibrate --protocols "
            f"{','.join(measured)}{cpus}` once on this machine (a few minutes); later runs "
            "on these CPUs check against it."]


#: A tail this many times the steady state's, in the windows left out, is said.
STALL_RATIO = 2.0


def _duration(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:,.0f} ms"


def stalls(run: RunDoc) -> list[str]:
    """Stages whose windows left out as still settling held a much worse tail than the
    steady state reported: a stall, a GC pause or a reload is part of how a deployment
    behaves, and the reader choosing one must see it."""
    out = []
    for t in run["targets"]:
        for s in t["stages"]:
            everything = s.get("all_measured")
            every, steady = everything["latency_ms"] if everything else None, s["latency_ms"]
            if not everything or not every or not steady:
                continue
            worse = [k for k in ("p99", "max") if steady.get(k) and every.get(k)
                     and every[k] > STALL_RATIO * steady[k]]
            worst_ms = everything["worst_ms"]
            if not worse or worst_ms is None:
                continue
            out.append(
                f"{t['name']} at {stage_load(s)}: a {_duration(worst_ms)} "
                f"stall at {everything['worst_at_s']:.1f} s into the measurement, in a "
                f"window left out of the steady state (steady state: p99 "
                f"{fmt_ms(steady['p99'])} ms, max {fmt_ms(steady['max'])} ms; everything "
                f"measured after the warm-up: p99 {fmt_ms(every['p99'])} ms, max "
                f"{fmt_ms(every['max'])} ms). The steady-state figures describe the "
                "deployment between such events; whether they recur is for a longer run "
                "(a soak timeline) to show.")
    return out


def warnings(run: RunDoc) -> list[str]:
    out: list[str] = []
    if run["status"] != "complete":
        out.append(f"The run is {run['status']}: it stopped before every target was measured. "
                   "Re-run to measure the rest.")
    shared = run["metadata"].get("smt_shared_cores")
    if shared:
        out.append(f"The target and the load generator ran on hardware threads of the same "
                   f"physical cores {shared}, competing for them. Give each side whole cores "
                   "with --target-cpus/--loadgen-cpus.")
    overlap = run["metadata"].get("cpu_overlap")
    if overlap:
        out.append(f"The target and the load generator shared CPUs {overlap}: every figure "
                   "mixes both. Give them separate CPUs with --target-cpus/--loadgen-cpus.")
    out += stalls(run)
    out += monitorcheck.findings(run)
    out += near_ceiling(run)
    out += unusable_calibrations(run)
    target_cpus = len(run["metadata"].get("target_cpus") or []) or 1
    for t in run["targets"]:
        crowded = [s for s in t["stages"]
                   if (p := s.get("platform")) and p["environments_max"] > target_cpus]
        if crowded:
            closed = [s for s in t["stages"] if s["concurrency"] is not None] or t["stages"]
            fair = min(closed, key=lambda s: s["concurrency"] or 0).get("platform")
            fair_cost = fair["cost_per_million_usd"].get("x86_64") if fair else None
            out.append(
                f"{t['name']}: at {', '.join(stage_load(s) for s in crowded)} "
                f"more environments ran than the {target_cpus} target CPU(s), so each "
                "invocation's Duration, billed GB-s and cost include waiting for a shared "
                "CPU, which on Lambda every environment has to itself. Those costs are upper "
                f"bounds; the least loaded stage's is the fair estimate"
                + (f" (${fair_cost:.3f} per million on x86_64)." if fair_cost else "."))
        for s in t["stages"]:
            where = f"{t['name']} at {stage_load(s)}"
            bad = s["errors"]
            if bad:
                kinds = "; ".join(f"{k} ({n})" for k, n in list(s["error_kinds"].items())[:3])
                out.append(f"{where}: {bad} of {s['requests']} requests failed"
                           f"{': ' + kinds if kinds else ''}. Check the target's log.")
            if s["unanswered"] > s["truncated"]:
                out.append(f"{where}: {s['unanswered'] - s['truncated']} requests sent before "
                           "the window never got an answer, so fewer users than stated were "
                           "active in it. The target hangs on some requests: check its log.")
            if s["target_processes_changed"]:
                out.append(f"{where}: a target process died or was restarted during the stage, "
                           "so its CPU figures miss part of the time. Check the target's log.")
            locust_rps = (s.get("locust") or {}).get("rps")
            if locust_rps and s["rps"] and abs(locust_rps / s["rps"] - 1) > CROSSCHECK_TOLERANCE:
                out.append(f"{where}: Locust counted {locust_rps:,.0f} successful req/s against "
                           f"deploybench's {s['rps']:,.0f}. Locust counts answers received in "
                           "the window, deploybench requests sent in it; a gap this large "
                           "means answers bunched at one edge of the window (a stall).")
    return out
