"""Warnings a reader must see next to the numbers, each ending with what to do about it.

A closed set, checked from ``run.json`` alone. Per-stage verdicts (stability, too few
requests, a busy load generator, late sends, error rate) are listed apart, as INVALID
stages; these are the other things a reader must know.
"""

from __future__ import annotations

from reports.format import stage_load
from reports.schema import RunDoc, deployment

#: Locust's req/s for the same window should agree with ours; beyond this, say so.
CROSSCHECK_TOLERANCE = 0.05
#: Which harness protocol each deployment is driven through (``deploybench calibrate``
#: measures each one's ceiling).
PROTOCOL_OF = {"inprocess": "inprocess", "flask": "http", "grpc": "grpc", "lambda": "lambda"}
#: A target at or above this share of its protocol's ceiling is flagged.
NEAR_CEILING = 0.80


def near_ceiling(run: RunDoc) -> list[str]:
    """Targets whose throughput came within 80% of their protocol's measured ceiling."""
    calibration = run["metadata"].get("calibration")
    if not calibration:
        return []
    out = []
    for t in run["targets"]:
        protocol = PROTOCOL_OF.get(deployment(t), "")
        ceiling = calibration.get("ceilings", {}).get(protocol, {})
        # Only a real ceiling: a side was saturated, and the stage was otherwise VALID.
        saturated = "saturated" not in str(ceiling.get("limited_by", "saturated"))
        limit = ceiling.get("rps") if saturated and ceiling.get("valid", True) else None
        if not limit:
            continue
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
    out += near_ceiling(run)
    target_cpus = len(run["metadata"].get("target_cpus") or []) or 1
    for t in run["targets"]:
        shared = [s for s in t["stages"]
                  if (s.get("platform") or {}).get("environments_max", 0) > target_cpus]
        if shared:
            closed = [s for s in t["stages"] if s["concurrency"] is not None] or t["stages"]
            fair = min(closed, key=lambda s: s["concurrency"] or 0).get("platform") or {}
            fair_cost = (fair.get("cost_per_million_usd") or {}).get("x86_64")
            out.append(
                f"{t['name']}: at {', '.join(stage_load(s) for s in shared)} "
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
