"""Where a request's time goes, per deployment, compared with calling the model in-process.

From medians in ``run.json``, each deployment's median latency is split into:

* **model**: the in-process median at its least loaded stage (one user): the bundle's
  preprocess, predict and postprocess with nothing around them;
* **encoding**: the steps of the deployment's wire format that a measured request goes
  through, timed by the harness (``codec.on_path_ms`` in run.json): the server's decode
  of the request and encode of its answer, and the client's decode of the answer (the
  load users decode every answer). Not the request's encoding: the load sends requests
  encoded before the load, so that step is not in any measured latency;
* **transport and server**: the rest of its median at the same load: loopback, the
  HTTP/gRPC stack, the server framework, and for Lambda the emulator and Runtime API;
* **queueing**: how much its median grows from that load to the common load, where
  requests wait for a busy worker.

Medians do not add exactly (the median of a sum is not the sum of medians), so the
split is an estimate. Where the timed parts (model and encoding) exceed a deployment's
median, its remainder is shown as 0 and the caption says by how much the parts overran:
the slices then do not add up to the median, and that row is not a split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.blocks import Table
from reports.format import fmt_ms, stage_load
from reports.loads import at_load, common_load, describe_common, least_loaded
from reports.runblocks import CodecCost
from reports.schema import RunDoc, StageResult

#: Timed parts over the median by more than this share of it are said in the caption
#: (medians of parts do not add exactly; within it the slices still add up).
OVERRUN_SAID = 0.05

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
    #: How far the timed parts (model, encoding) exceed the median (0: they fit in it).
    overrun_ms: float = 0.0

    def low_sum_ms(self) -> float:
        """The slices at the least load: the median they split, unless they overran."""
        return sum(v for k, v in self.parts.items() if k != "queueing")


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
        codec = on_path_ms(t.get("codec"))
        row = Breakdown(t["name"], low, total_low_ms=total)
        if t is reference or model is None:
            row.parts["model" if t is reference else "transport"] = total
        else:
            row.parts["model"] = model
            row.parts["encoding"] = codec
            row.parts["transport"] = max(0.0, total - model - codec)
            row.overrun_ms = max(0.0, model + codec - total)
        common = at_load(t, load)
        if common and common[0]["latency_ms"] is not None:
            row.total_common_ms = common[0]["latency_ms"]["p50"]
            row.parts["queueing"] = max(0.0, row.total_common_ms - total)
        rows.append(row)
    return rows


def on_path_ms(codec: CodecCost | None) -> float:
    """The encoding steps a measured request went through (harness.breakdown.ON_PATH).
    A run from before the load users decoded answers recorded none: upgrading it to
    schema 5 (reports.schema) fills them with the server's two steps, all its path held."""
    return float(codec["on_path_ms"]) if codec else 0.0


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
               f"reports/breakdown.py). Model: the in-process median{where}; encoding: the "
               "server's decode of the request and encode of the answer and the client's "
               "decode of the answer, timed by the harness (requests are encoded before the "
               "load, so their encoding is in no measured latency); transport and server: "
               "the rest at the least loaded stage; queueing: the median's growth to "
               f"{describe_common(common_load(run))}.")
    overran = [r for r in rows if r.overrun_ms > OVERRUN_SAID * r.total_low_ms]
    if overran:
        caption += " " + " ".join(
            f"For {r.name} the timed parts exceed its median by {fmt_ms(r.overrun_ms)} ms: "
            "its slices do not add up to it, and its row is not a split."
            for r in overran)
    if not has_model:
        caption += " No in-process target ran, so the model's time is inside 'transport'."
    return Table(("target", "least load", *(label for _, label, _ in COMPONENTS),
                  "p50 least load", "p50 common"), tuple(out),
                 frozenset(range(2, 2 + len(COMPONENTS) + 2)), caption=caption)
