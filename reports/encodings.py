"""The report's "Payload encodings" section: one deployment measured in several wire
encodings (``run --encodings json,binary``), and HTTP binary beside gRPC's protobuf.

It appears when the run has a deployment measured in more than one encoding, or an HTTP
result sent as binary and a gRPC one (protobuf); never for a run of one encoding. Each
result records its ``deployment`` and ``encoding`` (harness.encodings), so results are
grouped by those, not by their names. Per result it shows the request's size and the
encode+decode cost (``codec``, timed by the harness), throughput at the highest
closed-loop concurrency they all ran, and p50/p99 at their common load; then one finding
per pair in plain words.

Differences are judged as the rest of the report judges them: Welch's t-test at 5% over
trials with ``--trials 3`` or more (reports.trials); one run gives the figures, their
ratio and its windows' spread, and no verdict.
Request sizes are exact, and the codec figures are medians of many timed calls, so
those are stated without a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from reports import trials
from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table
from reports.format import NONE, fmt_ms, fmt_rps, users
from reports.loads import at_load, common_load, describe_common, figure_values
from reports.monitormodes import mode
from reports.runblocks import Metadata
from reports.schema import RunDoc, StageResult, TargetResult, deployment

#: What the wire encodings are called in sentences.
LABELS = {"json": "JSON", "binary": "binary", "protobuf": "protobuf"}
#: Request sizes within this ratio are "about the same size" (exact, but a few bytes of
#: framing are not a finding).
SAME_SIZE = 0.05


@dataclass(frozen=True)
class Pair:
    """``other`` judged against ``base``."""

    subject: str
    base: TargetResult
    base_label: str
    other: TargetResult
    other_label: str


def encoding(target: TargetResult) -> str | None:
    return target.get("encoding")


def _measured(run: RunDoc) -> list[TargetResult]:
    return [t for t in run["targets"] if t["status"] == "ok" and encoding(t)
            and any(s["latency_ms"] for s in t["stages"])]


def pairs(run: RunDoc) -> list[Pair]:
    """Each deployment's other encodings against its JSON result (or its first), then
    gRPC's protobuf against each HTTP deployment's binary; a batched result
    (``run --batching``) only against another batched alike."""
    measured = _measured(run)
    out = []
    by_deployment: dict[tuple[str, str | None, str, str], list[TargetResult]] = {}
    sized = {_size(t) for t in measured if _size(t)}
    for t in measured:
        # Lambda at several memory sizes (lambda-512-json): each size's encodings apart;
        # and each monitoring mode's (run --monitoring) apart.
        size = _size(t) if len(sized) > 1 else ""
        by_deployment.setdefault((deployment(t), t.get("batching"), size, _watch(t)),
                                 []).append(t)
    for (name, batched, size, watch), results in by_deployment.items():
        subject = name + (f"-{size}" if size else "") + ("+batch" if batched else "") + watch
        if len({encoding(t) for t in results}) < 2:
            continue
        base = next((t for t in results if encoding(t) == "json"), results[0])
        for t in results:
            if t is not base and encoding(t) != encoding(base):
                out.append(Pair(subject, base, _label(base), t, _label(t)))
    binary = [t for t in measured if encoding(t) == "binary"]
    for proto in (t for t in measured if encoding(t) == "protobuf"):
        for http in binary:
            if deployment(http) != deployment(proto) \
                    and http.get("batching") == proto.get("batching") \
                    and _watch(http) == _watch(proto):
                suffix = ("+batch" if proto.get("batching") else "") + _watch(proto)
                out.append(Pair(f"{deployment(proto)}{suffix} vs {deployment(http)}{suffix}",
                                http, f"{deployment(http)}{suffix}'s binary", proto,
                                "protobuf"))
    return out


def _watch(t: TargetResult) -> str:
    """A result's monitoring mode as its name's suffix ("" with monitoring off)."""
    watched = mode(t)
    return "" if watched == "off" else "+" + watched


def _size(t: TargetResult) -> str:
    """A Lambda result's memory size ("" for other deployments)."""
    return str((t.get("describe") or {}).get("memory_mb") or "")


def _label(t: TargetResult) -> str:
    wire = encoding(t) or ""
    return LABELS.get(wire, wire)


def applies(run: RunDoc) -> bool:
    return bool(pairs(run))


def _involved(ps: list[Pair]) -> list[TargetResult]:
    seen: list[TargetResult] = []
    for p in ps:
        for t in (p.base, p.other):
            if not any(t is s for s in seen):
                seen.append(t)
    return seen


def _sub_run(run: RunDoc, targets: list[TargetResult]) -> RunDoc:
    return cast(RunDoc, {**run, "targets": targets})


def highest_common_users(targets: list[TargetResult]) -> int | None:
    """The most closed-loop users every one of ``targets`` ran (fixed levels before a
    sweep's steps, which differ between targets)."""
    def levels(t: TargetResult, sweeps: bool) -> set[int]:
        return {s["concurrency"] for s in t["stages"] if s["concurrency"] is not None
                and s.get("mode", "closed") == "closed" and (sweeps or not s.get("sweep"))
                and s["latency_ms"] is not None}

    for sweeps in (False, True):
        shared = set.intersection(*(levels(t, sweeps) for t in targets)) if targets else set()
        if shared:
            return max(shared)
    return None


def _point(stages: list[StageResult], key: str) -> float | None:
    values = [v for s in stages if (v := trials.stage_metric(s, key)) is not None]
    return float(np.median(values)) if values else None


@dataclass(frozen=True)
class Verdict:
    base: float | None
    other: float | None
    #: True: significantly different; False: a tie (both over trials); None: not tested
    #: (one run) or not measured on a side.
    differs: bool | None
    how: str
    #: One run: the spread of each side's kept windows (``±4%``), base then other.
    spreads: tuple[str | None, str | None] = (None, None)

    def windows(self, base_label: str, other_label: str) -> str:
        """``windows spread flask ±4%, grpc ±2%; `` for one run with windows, else ``""``."""
        base, other = self.spreads
        if base is None or other is None:
            return ""
        return f"windows spread {other_label} {other}, {base_label} {base}; "


def spread_text(stages: list[StageResult], key: str) -> str | None:
    """One run's kept windows of a figure as a spread around their median (``±4%``)."""
    values = figure_values(stages, key) if len(stages) == 1 else []
    if not values:
        return None
    mid = float(np.median(values))
    return f"±{(max(values) - min(values)) / 2 / mid:.1%}" if mid > 0 else None


def judge(base: list[StageResult], other: list[StageResult], key: str) -> Verdict:
    """Two figures at one load: tested over trials (Welch's t at 5%) when both sides have
    enough of them; otherwise one run's figures with their windows' spread, untested."""
    a, b = _point(base, key), _point(other, key)
    if a is None or b is None:
        return Verdict(a, b, None, "not measured on one side")
    p = trials.welch_p(trials.trial_values(base, key), trials.trial_values(other, key))
    if p is not None:
        return Verdict(a, b, p < trials.ALPHA, f"Welch p = {p:.2g} over trials")
    return Verdict(a, b, None, "not tested, --trials 3 tests it",
                   (spread_text(base, key), spread_text(other, key)))


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "no ratio"


def _codec(t: TargetResult, key: Literal["request_bytes", "total_ms"]) -> float | None:
    codec = t.get("codec")
    value = codec.get(key) if codec else None
    return float(value) if value is not None else None


def _size_text(p: Pair) -> str | None:
    a, b = _codec(p.base, "request_bytes"), _codec(p.other, "request_bytes")
    if not a or not b:
        return None
    sizes = f"{b:,.0f} vs {a:,.0f} bytes"
    if abs(b / a - 1.0) <= SAME_SIZE:
        return f"{p.other_label} requests are about the size of {p.base_label} ({sizes})"
    ratio, how = (a / b, "smaller") if b < a else (b / a, "larger")
    return f"{p.other_label} requests are {ratio:.1f}x {how} than {p.base_label} ({sizes})"


def _latency_text(p: Pair, key: str, load: tuple[str, float] | None) -> str:
    v = judge(at_load(p.base, load), at_load(p.other, load), key)
    where = describe_common(load)
    if v.base is None or v.other is None:
        return f"{key} at {where} not measured on one side"
    values = f"{fmt_ms(v.other)} vs {fmt_ms(v.base)} ms"
    if v.differs is None:  # one run: the figures, untested
        return (f"{key} at {where} is {fmt_ms(v.other)} ms against {fmt_ms(v.base)} for "
                f"{p.base_label} ({_ratio(v.other, v.base)}; one run: "
                f"{v.windows(p.base_label, p.other_label)}{v.how})")
    if not v.differs:
        return f"{key} ties with {p.base_label} at {where} ({values}: a tie, {v.how})"
    how = "lower" if v.other < v.base else "higher"
    return (f"{key} is {fmt_ms(abs(v.other - v.base))} ms {how} than {p.base_label} at "
            f"{where} ({values}, {v.how})")


def _throughput_text(p: Pair, top: int | None) -> str | None:
    if top is None:
        return None
    load = ("closed", float(top))
    v = judge(at_load(p.base, load), at_load(p.other, load), "rps")
    if v.base is None or v.other is None or v.base <= 0:
        return None
    values = f"{fmt_rps(v.other)} vs {fmt_rps(v.base)} req/s"
    if v.differs is None:  # one run: the figures, untested
        return (f"throughput at {users(top)} is {v.other / v.base:.2f}x {p.base_label}'s "
                f"({values}; one run: {v.windows(p.base_label, p.other_label)}{v.how})")
    if not v.differs:
        return f"throughput ties at {users(top)} ({values}: a tie, {v.how})"
    return (f"throughput at {users(top)} is {v.other / v.base:.2f}x {p.base_label}'s "
            f"({values}, {v.how})")


def _codec_text(p: Pair) -> str | None:
    a, b = _codec(p.base, "total_ms"), _codec(p.other, "total_ms")
    if a is None or b is None:
        return None
    return f"encode+decode {fmt_ms(b)} vs {fmt_ms(a)} ms per request"


def _invalid(p: Pair, loads: list[tuple[str, float] | None]) -> bool:
    return any(not s.get("valid", True) for load in loads for t in (p.base, p.other)
               for s in at_load(t, load))


def finding(p: Pair, load: tuple[str, float] | None, top: int | None) -> str:
    """One pair in plain words, e.g. "**flask**: binary requests are 3.1x smaller than
    JSON (...); p50 is 0.20 ms lower than JSON at 4 users (...); ..."."""
    parts = [_size_text(p), _latency_text(p, "p50", load), _latency_text(p, "p99", load),
             _throughput_text(p, top), _codec_text(p)]
    text = f"**{p.subject}**: " + "; ".join(x for x in parts if x) + "."
    top_load = ("closed", float(top)) if top is not None else None
    if _invalid(p, [load, top_load]):
        text += " Some of these stages are INVALID (see above): read them with care."
    return text


def rows(run: RunDoc) -> tuple[list[TargetResult], tuple[str, float] | None, int | None]:
    """The results the section shows, their common load, and the highest closed-loop
    concurrency they share."""
    involved = _involved(pairs(run))
    return involved, common_load(_sub_run(run, involved)), highest_common_users(involved)


def table(run: RunDoc) -> Table:
    involved, load, top = rows(run)
    top_load = ("closed", float(top)) if top is not None else None
    out = []
    for t in involved:
        lat = at_load(t, load)
        size = _codec(t, "request_bytes")
        out.append((t["name"], deployment(t), _label(t),
                    NONE if size is None else f"{size:,.0f}", fmt_ms(_codec(t, "total_ms")),
                    fmt_rps(_point(at_load(t, top_load), "rps")),
                    fmt_ms(_point(lat, "p50")), fmt_ms(_point(lat, "p99"))))
    where = describe_common(load)
    top_text = users(top) if top is not None else "-"
    headers = ("result", "deployment", "encoding", "request bytes", "encode+decode ms",
               f"req/s at {top_text}", f"p50 ms at {where}", f"p99 ms at {where}")
    return Table(headers, tuple(out), frozenset(range(3, 8)), caption=(
        "One row per result. Request bytes: one example request's body as sent (gRPC: the "
        "serialised message). Encode+decode: the request's and the response's, timed in "
        "the harness's process per request (run.json `codec`). Throughput at the most "
        "closed-loop users every row ran; p50/p99 at their common load (medians over "
        "trials with --trials)."))


def blocks(run: RunDoc) -> list[Block]:
    ps = pairs(run)
    if not ps:
        return []
    _, load, top = rows(run)
    return [
        Heading("Payload encodings"),
        Paragraph("The same deployment measured with each request encoding (`run "
                  "--encodings`), and HTTP's binary body beside gRPC's protobuf message "
                  "(both carry the tensor as raw float32 bytes). With `--trials 3` or "
                  "more a difference is tested (Welch's t-test at 5% over the trials) and "
                  "called significant or a tie; one run gives the figures, their ratio and "
                  "the spread of its measurement windows, untested."),
        table(run),
        Bullets(tuple(finding(p, load, top) for p in ps)),
        Chart("encodings", "Payload encodings: request size and median latency",
              "Bars per result: request bytes (left) and p50 latency in ms at the common "
              "load (right)"),
    ]


def requests_text(meta: Metadata) -> str:
    """How the run encoded requests, for the method notes."""
    wires: list[str] | list[str | None] = meta.get("encodings") or [meta.get("encoding")]
    if len(wires) < 2:
        return f"the `{wires[0]}` encoding"
    names = " and ".join(f"`{w}`" for w in wires)
    return (f"the {names} encodings (each HTTP deployment measured once per encoding, as "
            "results NAME-ENCODING; gRPC always sends protobuf)")
