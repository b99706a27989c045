"""The questions people ask before choosing a deployment, answered where the run has
numbers, and the caveats a reader must know before trusting any of them."""

from __future__ import annotations

from reports.blocks import Table
from reports.decision import Decision
from reports.figures import Figures
from reports.format import fmt_cpus, fmt_ms, fmt_rps, stage_load
from reports.pricing import prices_filled
from reports.schema import RunDoc, deployment
from reports.serverless import redeploy_p50_ms

#: Whether each deployment can run with no network beyond the machine it runs on.
OFFLINE = {
    "inprocess": "yes: the model runs inside your application",
    "flask": "yes: a server on your own machines or containers",
    "fastapi": "yes: a server on your own machines or containers",
    "grpc": "yes: a server on your own machines or containers",
    "rayserve": "yes: a Ray cluster on your own machines (here a single node)",
    "lambda": "no: AWS Lambda is a cloud service (the emulator measured here runs "
              "offline, the real thing does not)",
}

QUESTION_HEADERS = ("target", "peak req/s", "lowest p50 ms", "works offline",
                    "new model version live after", "parity with in-process")


def questions_table(run: RunDoc, d: Decision) -> Table:
    rows = []
    by_name = {t["name"]: t for t in run["targets"]}
    for f in d.figures:
        t = by_name[f.name]
        parity = t["parity"]
        if parity is None:
            same = "-" if f.name == "inprocess" or not f.ok else "not checked"
        elif parity["ok"]:
            same = f"same on {parity['examples']} examples (max diff {parity['max_abs_diff']:.1e})"
        else:
            same = "DIFFERS"
        if f.name == "inprocess":
            same = "is the reference"
        redeploy = "-"
        redeploy_ms, redeploys, how = redeploy_p50_ms(t)
        if redeploy_ms is not None:
            took = f"{redeploy_ms / 1000.0:.2f} s" if redeploy_ms >= 1000.0 \
                else f"{fmt_ms(redeploy_ms)} ms"  # a reload in process: milliseconds
            redeploy = (f"{took} (p50 of {redeploys} "
                        f"redeploy{'s' if redeploys != 1 else ''}: {how or 'measured'})")
        elif f.cold_start_ms is not None:
            redeploy = f">= {f.cold_start_ms / 1000.0:.2f} s (one cold start)"
        low = f"{fmt_ms(f.min_p50_ms)} at {stage_load(f.min_p50_stage)}" \
            if f.min_p50_stage is not None else "-"
        rows.append((f.name, fmt_rps(f.peak_rps), low, OFFLINE.get(deployment(t), "-"),
                     redeploy, same))
    preprocessing = run["bundle"].get("preprocessing") or "not stated by the bundle"
    return Table(QUESTION_HEADERS, tuple(rows), frozenset({1, 2}), caption=(
        "Questions to ask before choosing. Peak req/s over VALID stages on the CPUs given; "
        "lowest p50 = minimum latency (one user). A new model version is live after the "
        "measured redeploy where the scenario has `redeploys` (new version handed over to "
        "its first good prediction, the old one serving meanwhile), else at least one cold "
        "start (launch to first good answer); a rolling update across many replicas also "
        "waits for traffic to drain, which is not measured here. "
        f"Preprocessing runs {preprocessing}, in every deployment: clients send raw "
        "inputs, and parity compares the live answers with the in-process ones."))


def caveats(run: RunDoc, d: Decision) -> list[str]:
    return [*_run_caveats(run), *_reach_caveats(run), *_sizing_caveats(d),
            *_external_caveats(run),
            *(item for f in d.figures for item in _figure_caveats(run, d, f))]


def _run_caveats(run: RunDoc) -> list[str]:
    """What the run itself lacked: written by an older deploybench, or without always-on
    prices."""
    items = []
    upgraded = run.get("upgraded_from")
    if upgraded:
        items.append(f"This run was written by an older deploybench (schema {upgraded}) and "
                     "upgraded on loading: what that version did not measure is shown as '-'.")
    filled = [k for k in prices_filled(run) if k.startswith("container")]
    if filled:
        items.append("The run recorded no always-on prices; this deploybench's defaults "
                     "were used for them.")
    return items


def _reach_caveats(run: RunDoc) -> list[str]:
    """How far the figures carry: the noise between runs, the CPUs given, the machine."""
    meta = run["metadata"]
    trials_n = meta.get("trials", 1) or 1
    return [
        "Noise: " + (f"each stage ran {trials_n} times; ± intervals are over trials. "
                     if trials_n > 1 else
                     "one run; ± intervals are over the measurement windows of one stage, "
                     "which understate run-to-run variation (repeat with --trials 3). ")
        + "Shared or virtual machines drift by 10% or more between runs: compare "
        "deployments within one run, and runs with `deploybench compare`.",
        f"CPU pinning: the deployment ran on CPUs {fmt_cpus(meta.get('target_cpus'))}, the "
        f"load generator on CPUs {fmt_cpus(meta.get('loadgen_cpus'))} (workers and torch "
        "threads per target are under Results per target). Capacity and cost per instance "
        "are for that many CPUs; other sizes scale differently (measure them with --target-cpus).",
        f"Machine: {meta.get('cpu_model')}, {meta.get('cpu_count')} CPUs, "
        f"{meta.get('memory_gb')} GB; Python {meta.get('python')}, torch {meta.get('torch')}, "
        f"Locust {meta.get('locust')}, deploybench {meta.get('deploybench')} "
        f"({str(meta.get('git_commit') or '')[:12] or 'no git'}"
        f"{', modified' if meta.get('git_dirty') else ''}). Full list at the end.",
    ]


def _sizing_caveats(d: Decision) -> list[str]:
    """How the always-on deployments were sized and priced."""
    items = []
    if any(f.name == "inprocess" and f.instances for f in d.figures):
        items.append("In-process is priced as an always-on instance of the same size: the "
                     "share of your application's servers the model takes.")
    if any(not f.pay_per_request and f.instances for f in d.figures) \
            and not d.objective.rps:
        items.append(
            "Always-on servers are sized for the average rate of the expected volume. "
            "Traffic has peaks: give the peak with --slo rps=PEAK to size for it.")
    return items


def _external_caveats(run: RunDoc) -> list[str]:
    """What an already-running endpoint's figures include and leave out."""
    items = []
    for t in run["targets"]:
        if t["describe"].get("external") and t["describe"].get("billing") == "per_request":
            items.append(
                f"{t['name']} is a Lambda function that was already deployed "
                f"({t['describe'].get('address')}), called through the Invoke API with "
                "boto3: deploybench started nothing there. Its durations, memory, cold "
                "starts and cost come from Lambda's own REPORT lines; its latency includes "
                "the network to the region and the client's request signing, and its cold "
                "starts are those the load happened to meet, not a forced one.")
        elif t["describe"].get("external"):
            items.append(
                f"{t['name']} is an endpoint that was already running "
                f"({t['describe'].get('address')}): deploybench started nothing there, so its "
                "CPU, memory, cold start and cost are not measured, and its latency includes "
                "the network between this machine and it.")
    return items


def _figure_caveats(run: RunDoc, d: Decision, f: Figures) -> list[str]:
    """One deployment's, where it is paid per request: its cold starts against the
    objective and in its cost, and what emulating it on this machine changes."""
    items = []
    if f.pay_per_request and f.meets and f.cold_start_ms is not None:
        p99 = d.objective.latency_ms.get("p99")
        if p99 is not None and f.cold_start_ms > p99:
            items.append(
                f"{f.name} meets the objective warm. A cold start takes "
                f"{fmt_ms(f.cold_start_ms)} ms, above p99 <= {p99:g} ms: if more than "
                "1% of requests meet a new environment (bursts, scaling out, traffic "
                "after an idle spell longer than the keep-alive), its p99 breaks the "
                "objective.")
    if f.cold_start_cost_ratio is not None:
        share = f.cold_start_cost_ratio / 100.0
        items.append(
            f"{f.name}'s cost counts the measured windows, after the warm-up's cold "
            f"starts. Each cold start's billed Init costs as much as "
            f"~{f.cold_start_cost_ratio:,.0f} warm requests, so if 1% of requests meet "
            f"a new environment the cost per request is ~{share:.0%} higher than shown.")
    if f.pay_per_request and f.ok and not f.external:
        cpus = len(run["metadata"].get("target_cpus") or []) or 1
        items.append(
            f"{f.name} is emulated here on {cpus} "
            "CPU(s) shared by all its environments; on AWS each environment has its own "
            "share of a CPU, so latency under concurrency is pessimistic here and "
            "throughput is not capped by these CPUs; its cold start lacks what AWS adds "
            "(a microVM, the container image), modelled apart under Cold starts.")
    return items
