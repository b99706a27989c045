"""Warnings a reader must see next to the numbers, each ending with what to do about it.

A closed set, checked from ``run.json`` alone. (Validity verdicts per stage, stability
and calibration against the harness's own ceiling come with the open-loop work.)
"""

from __future__ import annotations

from reports.schema import RunDoc

#: Above this share of its one core the load generator may be what limits the numbers
#: (Locust's own warning threshold is the same 90%).
LOADGEN_BUSY_PERCENT = 90.0
#: Locust's req/s for the same window should agree with ours; beyond this, say so.
CROSSCHECK_TOLERANCE = 0.05


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
    target_cpus = len(run["metadata"].get("target_cpus") or []) or 1
    for t in run["targets"]:
        shared = [s for s in t["stages"]
                  if (s.get("platform") or {}).get("environments_max", 0) > target_cpus]
        if shared:
            fair = min(t["stages"], key=lambda s: s["concurrency"]).get("platform") or {}
            fair_cost = (fair.get("cost_per_million_usd") or {}).get("x86_64")
            out.append(
                f"{t['name']}: at {', '.join(str(s['concurrency']) for s in shared)} users "
                f"more environments ran than the {target_cpus} target CPU(s), so each "
                "invocation's Duration, billed GB-s and cost include waiting for a shared "
                "CPU, which on Lambda every environment has to itself. Those costs are upper "
                f"bounds; the least loaded stage's is the fair estimate"
                + (f" (${fair_cost:.3f} per million on x86_64)." if fair_cost else "."))
        for s in t["stages"]:
            n = s["concurrency"]
            where = f"{t['name']} at {n} user{'' if n == 1 else 's'}"
            bad = s["errors"]
            if bad:
                kinds = "; ".join(f"{k} ({n})" for k, n in list(s["error_kinds"].items())[:3])
                out.append(f"{where}: {bad} of {s['requests']} requests failed"
                           f"{': ' + kinds if kinds else ''}. Check the target's log.")
            if not s.get("warmup_complete", True):
                out.append(f"{where}: not every user had an answer by the end of the warm-up "
                           f"({s.get('warmup_s') or 0:.0f} s), so the window began before "
                           "steady state. Raise warmup_max_s in the scenario.")
            if s["unanswered"] > s["truncated"]:
                out.append(f"{where}: {s['unanswered'] - s['truncated']} requests sent before "
                           "the window never got an answer, so fewer users than stated were "
                           "active in it. The target hangs on some requests: check its log.")
            if s["target_processes_changed"]:
                out.append(f"{where}: a target process died or was restarted during the stage, "
                           "so its CPU figures miss part of the time. Check the target's log.")
            busy = s["loadgen_cpu_percent"]
            if busy is not None and busy > LOADGEN_BUSY_PERCENT:
                target_busy = s["target_cpu_percent"]
                limit = ("the load generator, not the target, was the limit"
                         if target_busy is not None and target_busy < LOADGEN_BUSY_PERCENT
                         else "the load generator may have been a limit too")
                out.append(f"{where}: the load generator used {busy:.0f}% of its core (Locust "
                           f"runs on one), so {limit}. Use fewer users, or a faster machine "
                           "for the load generator.")
            locust_rps = (s.get("locust") or {}).get("rps")
            if locust_rps and s["rps"] and abs(locust_rps / s["rps"] - 1) > CROSSCHECK_TOLERANCE:
                out.append(f"{where}: Locust counted {locust_rps:,.0f} successful req/s against "
                           f"deploybench's {s['rps']:,.0f}. Locust counts answers received in "
                           "the window, deploybench requests sent in it; a gap this large "
                           "means answers bunched at one edge of the window (a stall).")
    return out
