"""The report's "Monitoring: what the targets counted" section: each stage's
``target_metrics`` (``run --metrics``: the target's own Prometheus metrics, scraped when
the stage started and once it had drained; issue 22) beside the load generator's figures
for the same requests.

It appears when any stage has ``target_metrics``. A row per result and stage: the requests
the target counted against those the load generator sent and their difference, the
errors each counted, the target's mean and p99 time against the load generator's mean and
p99 latency, and the share of the client's latency spent inside the application (target
mean / client mean). A disagreement (counts more than :data:`COUNT_TOLERANCE` apart, a
target mean above the client's by more than :data:`TIME_TOLERANCE`: the handler's time
cannot exceed the round trip that holds it; with failed requests, the harness's check of
the totals, as the client alone times a throttle or a refused connection; or a failed
scrape) is flagged in the section
and among the report's warnings (:func:`findings`, read by reports.findings).
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.blocks import Block, Bullets, Heading, Paragraph, Table
from reports.format import NONE, fmt_ms, stage_load
from reports.schema import RunDoc, StageResult, TargetResult, deployment
from reports.stageblocks import TargetMetricsBlock

#: Counts further apart than this are a disagreement (the issue's bound: 2%).
COUNT_TOLERANCE = 0.02
#: A target mean above the client's mean by more than this is a disagreement: the
#: handler's time is part of the client's round trip, so it can only be shorter.
TIME_TOLERANCE = 0.02


@dataclass(frozen=True)
class Check:
    """One stage's cross-check."""

    target: TargetResult
    stage: StageResult
    metrics: TargetMetricsBlock

    @property
    def diff(self) -> float | None:
        """(target - load generator) / load generator, as a fraction."""
        m = self.metrics
        sent, counted = m.get("loadgen_requests"), m.get("target_requests")
        if sent and counted is not None:
            return (counted - sent) / sent
        pct = m.get("count_diff_percent")
        return pct / 100.0 if pct is not None else None

    @property
    def share(self) -> float | None:
        """The target's mean over the client's: the share of the latency spent inside
        the application."""
        mine, theirs = self.metrics.get("target_mean_ms"), self.metrics.get("loadgen_mean_ms")
        return mine / theirs if mine is not None and theirs else None

    def problems(self) -> list[str]:
        """Why this stage's figures disagree, in words ([] when they agree)."""
        m = self.metrics
        if "error" in m:
            return [f"the scrape failed ({m['error']}), so the target's own figures are "
                    "missing"]
        out = []
        diff = self.diff
        if diff is not None and abs(diff) > COUNT_TOLERANCE:
            out.append(f"the target counted {m.get('target_requests', 0):,} requests against "
                       f"the load generator's {m.get('loadgen_requests', 0):,} ({diff:+.1%}, "
                       f"more than {COUNT_TOLERANCE:.0%} apart)")
        share = self.share
        # With failures the two means are of different requests (a throttle or a refused
        # connection is timed by the client only, and fast): the harness's check of the
        # totals says (below), not the means.
        if share is not None and share > 1 + TIME_TOLERANCE and not m.get("loadgen_errors"):
            out.append(f"the target's mean time {fmt_ms(m.get('target_mean_ms'))} ms is above "
                       f"the client's mean latency {fmt_ms(m.get('loadgen_mean_ms'))} ms "
                       f"({share - 1:+.0%}), which holds it")
        if not out and m.get("agrees") is False:
            out.append(m.get("why") or "the harness found the counts disagree")
        return out


def checks(run: RunDoc) -> list[Check]:
    return [Check(t, s, m) for t in run["targets"] for s in t["stages"]
            if (m := s.get("target_metrics")) is not None]


def applies(run: RunDoc) -> bool:
    return bool(checks(run))


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value:+.1%}"


def _count(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def _errors(m: TargetMetricsBlock) -> str:
    mine, theirs = m.get("target_errors"), m.get("loadgen_errors")
    return NONE if mine is None and theirs is None else f"{_count(mine)} / {_count(theirs)}"


HEADERS = ("target", "load", "target counted", "load generator sent", "difference",
           "errors (target / load gen.)", "target mean ms", "client mean ms",
           "target p99 ms", "client p99 ms", "in the application", "agrees")


def _row(c: Check) -> tuple[str, ...]:
    m = c.metrics
    load = stage_load(c.stage)
    if "error" in m:
        return (c.target["name"], load, *([NONE] * 9), "NO: scrape failed")
    share = c.share
    return (c.target["name"], load, _count(m.get("target_requests")),
            _count(m.get("loadgen_requests")), _pct(c.diff), _errors(m),
            fmt_ms(m.get("target_mean_ms")), fmt_ms(m.get("loadgen_mean_ms")),
            fmt_ms(m.get("target_p99_ms")), fmt_ms(m.get("loadgen_p99_ms")),
            NONE if share is None else f"{share:.0%}",
            "NO" if c.problems() else "yes")


def table(run: RunDoc) -> Table:
    return Table(HEADERS, tuple(_row(c) for c in checks(run)), frozenset(range(2, 11)),
                 caption=(
        "Per result and stage: the prediction requests the target counted in its own "
        "metrics (`deploybench_requests_total`; Lambda: `lambda_invocations_total` and "
        "`lambda_throttles_total`) "
        "between the scrape when the stage started and the one after it drained, against "
        "those the load generator sent in the same span; the difference (target over load "
        "generator); each side's errors; the target's mean and p99 time "
        "(`deploybench_request_seconds`; Lambda: `lambda_duration_milliseconds`; "
        "histograms, so the p99 is read from their buckets, the mean exact) against the "
        "load generator's mean and p99 latency; and the target's mean over the "
        "client's, the share of the latency spent inside the application."
        f" NO: counts more than {COUNT_TOLERANCE:.0%} apart, a "
        f"target mean above the client's by more than {TIME_TOLERANCE:.0%} (with failed "
        "requests, its total time: the client alone times a throttle or a refused "
        "connection), or a failed scrape."))


def _is_lambda(t: TargetResult) -> bool:
    return deployment(t).startswith("lambda")


def covers(run: RunDoc) -> str:
    """What the target's time covers, in one sentence."""
    text = ("The target's time covers its application, from the server handing it the "
            "request (headers parsed) to the answer starting: reading the body, any wait for "
            "a model thread or a batch, decoding, the model, encoding; not the connection, "
            "the server's parsing of the headers or the wait for a worker. So it is at most "
            "the client's latency, and the rest of that latency is the network, the server "
            "and waiting for it")
    if any(_is_lambda(c.target) for c in checks(run)):
        text += ("; for Lambda it is REPORT's Duration (the invocation in its environment, "
                 "not the Invoke API's routing nor an Init)")
    return text + "."


def findings(run: RunDoc) -> list[str]:
    """One line per disagreeing stage, ending with what to do."""
    out = []
    for c in checks(run):
        problems = c.problems()
        if not problems:
            continue
        where = f"{c.target['name']} at {stage_load(c.stage)}"
        if "error" in c.metrics:
            url = ((c.target.get("describe") or {}).get("monitoring") or {}).get("metrics_url")
            todo = (f"Check that its metrics answer ({url})." if url else
                    "Check that its metrics endpoint answers.")
        else:
            todo = ("Its own metrics cannot be trusted to count this deployment's traffic: "
                    "check that every serving process reports to the same registry (a "
                    "multi-worker server needs prometheus_client's multiprocess mode) and "
                    "that nothing else sent it requests.")
        out.append(f"{where}: monitoring disagrees with the load generator: "
                   + "; ".join(problems) + f". {todo}")
    return out


def blocks(run: RunDoc) -> list[Block]:
    cs = checks(run)
    if not cs:
        return []
    bad = findings(run)
    agree = len(cs) - len(bad)
    verdict = (f"All {len(cs)} stages agree within {COUNT_TOLERANCE:.0%}." if not bad else
               f"{agree} of {len(cs)} stages agree; these do not (also under Warnings):")
    return [
        Heading("Monitoring: what the targets counted"),
        Paragraph("With metrics on (`run --metrics`, `--monitoring`), each target counted "
                  "and timed its own requests, as a team would watch it in production; the "
                  "run scraped those metrics during each stage, and this section checks "
                  "them against the load generator's figures for the same requests. "
                  + covers(run)),
        table(run),
        Paragraph(verdict),
        *([Bullets(tuple(bad))] if bad else []),
    ]
