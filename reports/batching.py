"""The report's "Batching" section: a deployment measured with its server's dynamic
batcher (``run --batching``, results ``NAME+batch``) beside the same deployment without.

It appears when the run has a batched result. Each result records ``deployment``,
``encoding`` and ``batching`` (harness.encodings), so a batched result's unbatched partner
is the result of the same deployment and encoding with ``batching`` None, found by those
and not by its name. Per batched result, a table with a row per load level it ran (users,
or an open-loop rate): throughput, p50 and p99 without and with batching and their
ratios, and the mean batch size its servers formed (each stage's ``batching`` block,
counted from their batch logs in the kept windows); a chart of the batch sizes at each
level; and a sentence, from those figures, on where batching paid and what it cost.

Figures are a stage's own (medians over trials with ``--trials``); ratios are not tested
here (the "Payload encodings" and decision sections test differences over trials), and a
sentence that rests on an INVALID stage says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reports import trials
from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table
from reports.format import NONE, fmt_ms, fmt_rps, users
from reports.loads import at_load, level_of
from reports.schema import RunDoc, StageResult, TargetResult, deployment

#: Ratios within this of 1 are "about the same" (one run's figures move this much).
SAME = 0.05
#: A mean batch below this is "batches barely formed": the change is mostly not batching.
FEW = 1.5

#: A load level: ("closed", users) or ("open", rate).
Load = tuple[str, float]


@dataclass(frozen=True)
class Pair:
    """A batched result and its unbatched partner (None: measured batched only)."""

    batched: TargetResult
    base: TargetResult | None
    #: An unbatched result of the same deployment and encoding that was not measured (it
    #: failed): why there is no base although the run asked for one.
    unmeasured: str | None = None


def is_batched(t: TargetResult) -> bool:
    return bool(t.get("batching"))


def _measured(t: TargetResult) -> bool:
    return t["status"] == "ok" and any(s["latency_ms"] for s in t["stages"])


def pairs(run: RunDoc) -> list[Pair]:
    """Each measured batched result, with the unbatched result of its deployment and
    encoding when the run has one (``--batching both``)."""
    plain = [t for t in run["targets"] if _measured(t) and not is_batched(t)]
    out = []
    for t in run["targets"]:
        if not (_measured(t) and is_batched(t)):
            continue
        twins = [p for p in run["targets"] if not is_batched(p)
                 and deployment(p) == deployment(t) and p.get("encoding") == t.get("encoding")]
        base = next((p for p in twins if p in plain), None)
        failed = next((p["name"] for p in twins if p not in plain), None)
        out.append(Pair(t, base, failed if base is None else None))
    return out


def applies(run: RunDoc) -> bool:
    return bool(pairs(run))


def levels(t: TargetResult) -> list[Load]:
    """The load levels a result ran, in the order run (a timeline's segments are not
    levels: its stage is left out)."""
    out: list[Load] = []
    for s in t["stages"]:
        mode, level = level_of(s)
        if s["latency_ms"] is None or s.get("mode") == "timeline" or level is None:
            continue
        if (mode, float(level)) not in out:
            out.append((mode, float(level)))
    return out


def load_text(load: Load) -> str:
    mode, level = load
    return f"{fmt_rps(level)} req/s offered" if mode == "open" else users(int(level))


def point(stages: list[StageResult], key: str) -> float | None:
    """A figure at one load: the stage's, or the median over trials."""
    values = [v for s in stages if (v := trials.stage_metric(s, key)) is not None]
    return float(np.median(values)) if values else None


def mean_batch(stages: list[StageResult]) -> float | None:
    """Requests per forward pass over the stages' kept windows (None: no batch log)."""
    blocks = [b for s in stages if (b := s.get("batching")) is not None]
    batches = sum(b["batches"] for b in blocks)
    return sum(b["requests"] for b in blocks) / batches if batches else None


def sizes_at(t: TargetResult, load: Load) -> dict[int, int]:
    """Forward passes by requests served, at one load (trials summed)."""
    out: dict[int, int] = {}
    for s in at_load(t, load):
        block = s.get("batching")
        for size, count in (block["sizes"] if block else {}).items():
            out[int(size)] = out.get(int(size), 0) + count
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Row:
    """One load level of a pair: each figure unbatched (``base_``) and batched."""

    load: Load
    base_rps: float | None
    rps: float | None
    base_p50: float | None
    p50: float | None
    base_p99: float | None
    p99: float | None
    mean_batch: float | None
    #: Every stage behind the row is VALID.
    valid: bool
    #: Trials behind the batched figures (medians over them when more than one).
    trials: int = 1


def rows(p: Pair) -> list[Row]:
    out = []
    for load in levels(p.batched):
        mine = at_load(p.batched, load)
        theirs = at_load(p.base, load) if p.base is not None else []
        out.append(Row(load, point(theirs, "rps"), point(mine, "rps"),
                       point(theirs, "p50"), point(mine, "p50"),
                       point(theirs, "p99"), point(mine, "p99"), mean_batch(mine),
                       all(s.get("valid", True) for s in (*mine, *theirs)), len(mine)))
    return out


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _ratio_text(value: float | None, base: float | None) -> str:
    r = ratio(value, base)
    return NONE if r is None else f"{r:.2f}x"


def table(p: Pair) -> Table:
    base = p.base["name"] if p.base is not None else "unbatched"
    out = []
    for r in rows(p):
        out.append((load_text(r.load) + ("" if r.valid else " (INVALID)"),
                    fmt_rps(r.base_rps), fmt_rps(r.rps), _ratio_text(r.rps, r.base_rps),
                    fmt_ms(r.base_p50), fmt_ms(r.p50), _ratio_text(r.p50, r.base_p50),
                    fmt_ms(r.base_p99), fmt_ms(r.p99), _ratio_text(r.p99, r.base_p99),
                    NONE if r.mean_batch is None else f"{r.mean_batch:.2f}"))
    name = p.batched["name"]
    headers = ("load", f"req/s {base}", f"req/s {name}", "ratio", f"p50 ms {base}",
               f"p50 ms {name}", "ratio", f"p99 ms {base}", f"p99 ms {name}", "ratio",
               "mean batch")
    return Table(headers, tuple(out), frozenset(range(1, 11)), caption=(
        f"{name}: {p.batched.get('batching')}. One row per load level; ratios are "
        f"{name} over {base} (below 1 is lower). Mean batch: requests per forward pass "
        "its servers made in the stage's kept windows (run.json `batching`)."))


def _pct(value: float | None, base: float | None) -> str:
    r = ratio(value, base)
    return NONE if r is None else f"{r - 1:+.0%}"


def _paid(r: Row) -> bool:
    """Batching paid at this level: more throughput, or a lower p99, beyond noise; not at
    the price of a higher p99; and from batches actually formed (a mean under
    :data:`FEW` is mostly single passes: a change then is not batching's)."""
    more = ratio(r.rps, r.base_rps)
    p99 = ratio(r.p99, r.base_p99)
    gained = (more is not None and more > 1 + SAME) or (p99 is not None and p99 < 1 - SAME)
    worse = p99 is not None and p99 > 1 + SAME
    batched = r.mean_batch is None or r.mean_batch >= FEW
    return gained and not worse and batched


def _spec_wait(t: TargetResult) -> str:
    spec = str(t.get("batching") or "")
    wait = next((part.split("=", 1)[1] for part in spec.split(",")
                 if part.startswith("max_wait_ms=")), None)
    return f" (max_wait_ms={wait})" if wait is not None else ""


def _best_text(p: Pair, best: Row, base: str) -> str:
    name = p.batched["name"]
    return (f"{name} serves {ratio(best.rps, best.base_rps) or 0:.2f}x the requests of "
            f"{base} at {load_text(best.load)}, p99 {_pct(best.p99, best.base_p99)}, "
            f"p50 {_pct(best.p50, best.base_p50)} (mean batch "
            f"{NONE if best.mean_batch is None else f'{best.mean_batch:.1f}'})")


def _light_text(p: Pair, light: Row) -> str | None:
    if light.p50 is None or light.base_p50 is None:
        return None
    delta = light.p50 - light.base_p50
    verb = "adds" if delta >= 0 else "takes"
    return (f"at {load_text(light.load)} it {verb} {fmt_ms(abs(delta))} ms "
            f"{'to' if delta >= 0 else 'from'} p50{_spec_wait(p.batched)}, mean batch "
            f"{NONE if light.mean_batch is None else f'{light.mean_batch:.1f}'}")


def _threads_text(p: Pair) -> str | None:
    """When the batched server also took more requests at once per worker (a threaded
    server holds a thread per request waiting in a batch), say so: with few batches
    formed, that, not batching, is most of what changed."""
    assert p.base is not None
    described = p.batched.get("describe", {})
    if "asyncio" in str(described.get("server", "")):  # gRPC aio: no thread per request
        return None
    mine = described.get("threads_per_worker")
    theirs = p.base.get("describe", {}).get("threads_per_worker")
    if not mine or not theirs or mine == theirs:
        return None
    means = [r.mean_batch for r in rows(p) if r.mean_batch is not None]
    what = ("Ray Serve's max_ongoing_requests" if "Ray Serve" in str(described.get("server"))
            else "its threads")
    text = (f"{p.batched['name']} took up to {mine} requests at once per worker against "
            f"{theirs} ({what}: room for a batch's requests)")
    if means and max(means) < FEW:
        text += (f", and its mean batch stayed under {FEW:g}: what changed is mostly that, "
                 "not batching")
    return text


def finding(p: Pair) -> str:
    """One batched result in plain words, from its rows: where batching paid (the level
    where throughput rose most), what it cost at the lightest load, or that it never
    paid."""
    name = p.batched["name"]
    rs = rows(p)
    if p.base is None:
        sizes = ", ".join(f"{load_text(r.load)} {r.mean_batch:.1f}" for r in rs
                          if r.mean_batch is not None)
        why = (f"its unbatched result {p.unmeasured} was not measured (it failed)"
               if p.unmeasured else "measured batched only (run with `--batching both`)")
        return (f"**{name}**: {why}, so there is nothing to compare with; mean batch "
                f"size: {sizes or NONE}.")
    base = p.base["name"]
    compared = [r for r in rs if r.rps is not None and r.base_rps]
    if not compared:
        return f"**{name}**: no load level was measured both with and without batching."
    paid = [r for r in compared if _paid(r)]
    parts = []
    if paid:
        best = max(paid, key=lambda r: ratio(r.rps, r.base_rps) or 0.0)
        where = ", ".join(load_text(r.load) for r in paid)
        parts.append(f"{_best_text(p, best, base)}; batching paid at {where}")
    else:
        low, high = (min(ratio(r.rps, r.base_rps) or 0.0 for r in compared),
                     max(ratio(r.rps, r.base_rps) or 0.0 for r in compared))
        means = [r.mean_batch for r in compared if r.mean_batch is not None]
        parts.append(f"batching did not pay at any load measured (more throughput or a "
                     f"lower p99, with no higher p99, from batches averaging {FEW:g} or "
                     f"more): throughput "
                     f"{low:.2f}x to {high:.2f}x {base}'s, p99 never "
                     f"{SAME:.0%} lower" + (f", mean batch {max(means):.1f} at most"
                                            if means else ""))
    lightest = min(compared, key=lambda r: r.load[1])
    light = _light_text(p, lightest) if lightest not in paid else None
    if light:
        parts.append(light)
    threads = _threads_text(p)
    if threads:
        parts.append(threads)
    several = min(r.trials for r in compared) > 1
    how = "medians over trials" if several else "one run's figures"
    text = f"**{name}** against {base}: " + "; ".join(parts) + f" ({how}, untested)."
    if not all(r.valid for r in compared):
        text += " Some of these stages are INVALID (marked in the table): read them with care."
    return text


def blocks(run: RunDoc) -> list[Block]:
    ps = pairs(run)
    if not ps:
        return []
    out: list[Block] = [
        Heading("Batching"),
        Paragraph("The same deployment with its server's dynamic batcher (`run "
                  "--batching`: requests queue, and one forward pass serves up to "
                  "max_batch of them, or those that arrived within max_wait_ms of the "
                  "first) and without. Batching trades a wait for fewer, larger forward "
                  "passes: it pays when requests arrive together faster than the model "
                  "serves them one by one. When they do not, it costs the wait "
                  "(max_wait_ms), the hand-off to the batcher's model thread, and in a "
                  "threaded server the extra threads a batch's requests need. "
                  "In closed loop, users wait for their answers, so a batch holds at most "
                  "as many requests as there are users."),
    ]
    for p in ps:
        out += [Heading(p.batched["name"], 3), table(p)]
    out += [
        Bullets(tuple(finding(p) for p in ps)),
        Chart("batching", "Batch sizes formed at each load",
              "Bars per batched result: the share of its forward passes that served each "
              "number of requests, one colour per load level"),
    ]
    return out
