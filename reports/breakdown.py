"""Where a request's time goes, per deployment, compared with calling the model in-process.

From medians in ``run.json``, each deployment's median latency is split into:

* **model**: the in-process median at its least loaded stage (one user): the bundle's
  preprocess, predict and postprocess with nothing around them;
* **encoding**: encode and decode of the request and the response in the deployment's
  wire format, timed by the harness (``codec`` in run.json);
* **transport and server**: the rest of its median at the same load: loopback, the
  HTTP/gRPC stack, the server framework, and for Lambda the emulator and Runtime API;
* **queueing**: how much its median grows from that load to the common load, where
  requests wait for a busy worker.

Medians do not add exactly (the median of a sum is not the sum of medians), so the
split is an estimate; a negative remainder is shown as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.blocks import Table
from reports.decision import at_load, common_load, describe_common, least_loaded
from reports.format import fmt_ms, stage_load
from reports.schema import RunDoc, StageResult

COMPONENTS = (
    ("model", "model (in-process, least load)", "#4c78a8"),
    ("encoding", "encoding (request and response)", "#f58518"),
    ("transport", "transport and server", "#54a24b"),
    ("queueing", "queueing at the common load", "#e45756"),
)


@dataclass
class Breakdown:
    name: str
    low_stage: StageResult
    parts: dict[str, float] = field(default_factory=dict)
    total_low_ms: float = 0.0
    total_common_ms: float | None = None


def breakdown(run: RunDoc) -> list[Breakdown]:
    targets = [t for t in run["targets"] if t["status"] == "ok"]
    reference = next((t for t in targets if t["name"] == "inprocess"), None)
    ref_stage = least_loaded(reference) if reference else None
    model = ref_stage["latency_ms"]["p50"] if ref_stage and ref_stage["latency_ms"] else None
    load = common_load(run)
    rows = []
    for t in targets:
        low = least_loaded(t)
        if low is None or low["latency_ms"] is None:
            continue
        total = low["latency_ms"]["p50"]
        codec = (t.get("codec") or {}).get("total_ms") or 0.0
        row = Breakdown(t["name"], low, total_low_ms=total)
        if t is reference or model is None:
            row.parts["model" if t is reference else "transport"] = total
        else:
            row.parts["model"] = min(model, total)
            row.parts["encoding"] = min(codec, total - row.parts["model"])
            row.parts["transport"] = max(0.0, total - model - codec)
        common = at_load(t, load)
        if common and common[0]["latency_ms"] is not None:
            row.total_common_ms = common[0]["latency_ms"]["p50"]
            row.parts["queueing"] = max(0.0, row.total_common_ms - total)
        rows.append(row)
    return rows


def table(run: RunDoc) -> Table | None:
    rows = breakdown(run)
    if not rows:
        return None
    has_model = any("model" in r.parts for r in rows)
    out = []
    for r in rows:
        out.append((r.name, stage_load(r.low_stage) + ("" if r.low_stage.get("valid", True)
                                                       else " (INVALID)"),
                     *(fmt_ms(r.parts.get(key)) for key, _, _ in COMPONENTS),
                     fmt_ms(r.total_low_ms), fmt_ms(r.total_common_ms)))
    reference = next((r for r in rows if r.name == "inprocess"), None)
    where = "" if reference is None else (
        f" at {stage_load(reference.low_stage)}"
        + ("" if reference.low_stage.get("valid", True) else ", an INVALID stage"))
    caption = ("Median latency split per request, in ms (an estimate from medians: see "
               f"reports/breakdown.py). Model: the in-process median{where}; encoding: timed "
               "by the harness; transport and server: the rest at the least loaded stage; "
               f"queueing: the median's growth to {describe_common(common_load(run))}.")
    if not has_model:
        caption += " No in-process target ran, so the model's time is inside 'transport'."
    return Table(("target", "least load", *(label for _, label, _ in COMPONENTS),
                  "p50 least load", "p50 common"), tuple(out),
                 frozenset(range(2, 2 + len(COMPONENTS) + 2)), caption=caption)
