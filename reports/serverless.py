"""Report sections for what only some targets have: the serverless platform's own figures
(Lambda's REPORT records) and cold starts."""

from __future__ import annotations

import math
from typing import Literal

from reports.blocks import Table
from reports.costs import pay_per_request
from reports.format import fmt_ms, fmt_num, stage_load
from reports.pricing import effective_prices, prices_filled
from reports.schema import RunDoc, TargetResult
from reports.stageblocks import LatencySummary

PLATFORM_HEADERS = ("load", "invocations", "cold", "throttled", "new envs in warm-up",
                    "init p50 ms", "init CPU p50 ms", "warm duration p50 ms",
                    "warm duration p99 ms", "thaw p50 ms", "max memory used MB", "billed GB-s",
                    "window $/1M x86_64", "window $/1M arm64")


#: What AWS adds to a cold start that the emulator does not do, modelled (``run
#: --lambda-platform-init-ms``): creating the execution environment (a Firecracker
#: microVM) and starting its container, which Lambda's container loading is built to do
#: in about 50 ms (Brooker et al., "On-demand Container Loading in AWS Lambda", USENIX
#: ATC 2023). Not included: fetching the image's blocks on first read during Init (a
#: torch image's imports touch hundreds of MB), which can add seconds when the caches are
#: cold; take your own functions' Init Duration from AWS to set it.
PLATFORM_INIT_MS = 50.0


def _get(summary: LatencySummary | None, key: Literal["p50", "p99"]) -> float | None:
    return summary.get(key) if summary else None


def platform_table(target: TargetResult) -> Table | None:
    """Per stage, the invocations the platform recorded in the window."""
    rows = []
    for s in target["stages"]:
        p = s.get("platform")
        if not p:
            continue
        per_million = p.get("cost_per_million_usd") or {}
        scale = p.get("scale_out")
        # Init of the stage's new environments: those of the window, else the warm-up's.
        init = p["init_ms"] or (scale["init_ms"] if scale else None)
        init_cpu = p.get("init_cpu_ms") or (scale["init_cpu_ms"] if scale else None)
        rows.append((
            stage_load(s), str(p["invocations"]), str(p["cold"]), str(p["throttled"]),
            str(scale["cold_starts"]) if scale else "-",
            fmt_ms(_get(init, "p50")), fmt_ms(_get(init_cpu, "p50")),
            fmt_ms(_get(p.get("duration_warm_ms"), "p50")),
            fmt_ms(_get(p.get("duration_warm_ms"), "p99")),
            fmt_ms(_get(p.get("thaw_ms"), "p50")),
            fmt_num(p.get("max_memory_used_mb"), 0), fmt_num(p.get("billed_gb_s"), 2),
            fmt_num(per_million.get("x86_64"), 3), fmt_num(per_million.get("arm64"), 3),
        ))
    if not rows:
        return None
    where = ("Lambda's own REPORT lines, from the log tail of each call sent in the window; "
             "new environments are those whose REPORT had an Init Duration"
             if target["describe"].get("external") else
             "the platform's REPORT records for invocations received in each window "
             "(duration: the invocation inside its environment). Init is wall time here, "
             "where environments starting together share the target CPUs; Init CPU is what "
             "it would take with a CPU of its own, as on Lambda")
    shaped = sandbox_text(target)
    return Table(PLATFORM_HEADERS, tuple(rows), frozenset(range(len(PLATFORM_HEADERS))),
                 caption=f"{target['name']}: {where}. Cost per million covers the window's "
                         "requests, after the warm-up's cold starts"
                         + (f". {shaped}" if shaped else ""))


def sandbox_text(target: TargetResult) -> str | None:
    """How the emulator shaped the environments (describe["sandbox"]): the CPU share and
    memory limit the kernel enforced, or that the results ran unthrottled and why."""
    box = target["describe"].get("sandbox")
    if not box:
        return None
    mb = box["memory_mb"]
    share = box["cpu_share_effective"]
    if box["enforced"]:
        capped = ", capped by the target CPUs" if share < box["cpu_share"] else ""
        text = (f"Each environment was held to {share:.2f} CPU (memory size {mb:,} MB / "
                f"1,769{capped}) by a {box['cpu']} CPU quota, and killed past {mb:,} MB by a "
                f"{box['memory']} memory limit (page cache counts)")
    else:
        text = (f"UNTHROTTLED: every environment ran at the full speed of the target CPUs "
                f"with unlimited memory, not held to the {box['cpu_share']:.2f} CPU and "
                f"{mb:,} MB a {mb:,} MB function gets on AWS ({box['reason']}); its "
                "durations are those of a bigger function")
    if box["freeze"] == "none":
        return f"{text}; not frozen between invocations (background threads ran)"
    return (f"{text}; frozen between invocations ({box['freeze']}), thaw: the time to "
            "thaw before each warm invocation")


def _median(values: list[float]) -> float | None:
    """Nearest-rank median, as every other percentile in the reports."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) / 2) - 1]


def platform_init_ms(run: RunDoc) -> float:
    """The modelled share AWS adds to an emulated Lambda cold start (the run's, or this
    deploybench's default for runs that recorded none)."""
    value = run["metadata"].get("lambda_platform_init_ms")
    return PLATFORM_INIT_MS if value is None else float(value)


def _emulated_lambda(target: TargetResult) -> bool:
    return pay_per_request(target) and not target["describe"].get("external")


def cold_start_table(run: RunDoc) -> Table | None:
    modelled = platform_init_ms(run)
    rows = []
    for t in run["targets"]:
        cold = t.get("cold_starts")
        if not cold or not cold.get("supported"):
            continue
        total = cold.get("total_ms")
        inits = [s["init_ms"] for s in cold.get("samples", []) if s.get("init_ms") is not None]
        p50 = total["p50"] if total else None
        lam = _emulated_lambda(t) and p50 is not None
        rows.append((t["name"], str(len(cold.get("samples", []))), fmt_ms(p50),
                     fmt_ms(total["max"] if total else None),
                     fmt_ms(_median(inits)),
                     fmt_ms(modelled) if lam else "-",
                     fmt_ms(p50 + modelled) if lam and p50 is not None else "-",
                     str(cold.get("definition") or "")))
    if not rows:
        return None
    return Table(("target", "n", "p50 ms", "max ms", "Init p50 ms", "AWS adds ms (modelled)",
                  "p50 with it ms", "what is timed"),
                 tuple(rows), frozenset({1, 2, 3, 4, 5, 6}),
                 caption="Cold start: from nothing running to the first good answer, as "
                         "measured; for an emulated Lambda function also what AWS adds, "
                         "modelled (see below), and the sum")


def lambda_cold_start_text(run: RunDoc) -> str | None:
    """What an emulated Lambda cold start contains, and what AWS adds that it does not."""
    if not any(_emulated_lambda(t) and (cold := t.get("cold_starts")) and cold["supported"]
               for t in run["targets"]):
        return None
    modelled = platform_init_ms(run)
    return (
        "The Lambda emulator's cold start is measured, and is only part of AWS's: a new "
        "process of the runtime (awslambdaric) starts, imports the handler and torch, and "
        "loads the model (Init), then serves the request. AWS first creates the execution "
        "environment (a Firecracker microVM) and starts the function's container; a torch "
        "function exceeds the 250 MB zip limit and ships as a container image, whose blocks "
        "are fetched on first read during Init. deploybench models the first part as "
        f"{fmt_ms(modelled)} ms (`--lambda-platform-init-ms`; by default Lambda's "
        "container-loading target of ~50 ms, Brooker et al., \"On-demand Container Loading "
        "in AWS Lambda\", USENIX ATC 2023), shown apart above, never mixed into the "
        "measured figures. The image's lazy loading is not modelled: with cold caches a "
        "torch image's imports can add seconds. Take your function's Init Duration from "
        "AWS to set it.")


def redeploy_table(run: RunDoc) -> Table | None:
    """The scenario's redeploys per target: a new model version to its first good
    prediction, the old version serving until then."""
    rows = []
    for t in run["targets"]:
        measured = t.get("redeploys")
        if not measured or not measured.get("supported"):
            continue
        total = measured.get("total_ms")
        what = str(measured.get("definition") or "")
        if measured.get("error"):
            what = f"{what}; {measured['error']}" if what else str(measured["error"])
        rows.append((t["name"], str(len(measured.get("samples", []))),
                     fmt_ms(total["p50"] if total else None),
                     fmt_ms(total["max"] if total else None),
                     str(measured.get("kind") or "-"), what))
    if not rows:
        return None
    return Table(("target", "n", "p50 ms", "max ms", "how", "what is timed"), tuple(rows),
                 frozenset({1, 2, 3}),
                 caption="Redeploy: a new model version handed to the running deployment, "
                         "to its first good prediction from that version (the same bundle "
                         "redeployed: the time depends on the model's size and load path, "
                         "not its weights)")


def redeploy_p50_ms(target: TargetResult) -> tuple[float | None, int, str | None]:
    """The measured redeploy's median, how many were measured and how it was done
    (None, 0, None: none)."""
    measured = target.get("redeploys")
    if not measured or not measured["supported"]:
        return None, 0, None
    total = measured.get("total_ms")
    return (total["p50"] if total else None, len(measured.get("samples", [])),
            measured.get("kind"))


def prices_line(run: RunDoc) -> str | None:
    prices = run.get("prices")
    if not prices:
        return None
    per_gb = prices.get("lambda_gb_second", {})
    return (f"Serverless cost uses {prices.get('currency', 'USD')} prices as of "
            f"{prices.get('as_of')} ({prices.get('source', 'user file')}): "
            f"${prices.get('lambda_request', 0) * 1e6:.2f} per million requests, "
            + ", ".join(f"${v:.10f}/GB-s {k}" for k, v in per_gb.items())
            + ("; Init billed" if prices.get("lambda_bill_init") else "")
            + ". " + other_ways_line(run) + " Override with --prices FILE.")


def other_ways_line(run: RunDoc) -> str:
    """The rates of provisioned concurrency and Managed Instances, each dated and sourced
    (this deploybench's defaults where the run recorded none)."""
    p = effective_prices(run)
    configured, served = p["provisioned_gb_second"], p["provisioned_duration_gb_second"]
    kinds, hourly = p["managed_instance_type"], p["managed_instance_hour"]
    return (
        f"Provisioned concurrency, as of {p['provisioned_as_of']} "
        f"({p['provisioned_source']}): "
        + ", ".join(f"${configured[a]:.10f}/GB-s configured and ${served[a]:.10f}/GB-s of "
                    f"duration {a}" for a in configured if a in served)
        + f", plus the request fee. Lambda Managed Instances, as of {p['managed_as_of']} "
          f"({p['managed_source']}): "
        + ", ".join(f"{kinds.get(a, '?')} ${h:g} an hour ({a}, "
                    f"{p['managed_instance_vcpus'].get(a, 0):g} vCPUs)"
                    for a, h in hourly.items())
        + f", a management fee of {p['managed_fee']:.0%} of that, "
          f"${p['managed_request'] * 1e6:.2f} per million requests, at least "
          f"{p['managed_min_instances']:g} instances.")


def always_on_prices_line(run: RunDoc) -> str:
    """The always-on rates behind every server's monthly cost, with their source and date
    (this deploybench's defaults where the run recorded none)."""
    p = effective_prices(run)
    rates = "; ".join(
        f"{arch} ${p['container_vcpu_hour'][arch]:g} per vCPU-hour and "
        f"${p['container_gb_hour'][arch]:g} per GB-hour"
        for arch in p["container_vcpu_hour"] if arch in p["container_gb_hour"])
    filled = any(k.startswith("container") for k in prices_filled(run))
    least = p["container_min_instances"]
    return (f"Always-on cost (a server that runs whether requests come or not: every "
            f"deployment not billed per request) uses {p.get('currency', 'USD')} prices as of "
            f"{p.get('container_as_of')}"
            f"{' (defaults: the run recorded none)' if filled else ''} "
            f"({p.get('container_source', 'user file')}): {rates}. An instance has the "
            f"vCPUs it was measured on and its peak RSS rounded up to whole GB, at least "
            f"{p['container_min_gb_per_vcpu']:g} GB per vCPU; at least {least:g} "
            f"instance{'s' if least != 1 else ''} always run{'s' if least == 1 else ''}; "
            f"{p['hours_per_month']:g} hours a month, so a month costs instances x (vCPUs "
            "x vCPU-hour + GB x GB-hour) x hours. Override with --prices FILE.")
