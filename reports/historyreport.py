"""A suite's history as a report (history.md, history.html, charts/): its entries, the
latest entry against the one before it (every worse change, with ``compare``'s
verdicts), and a trend chart per cell and metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reports import historychart, html, markdown
from reports.blocks import Block, Bullets, Chart, Heading, Paragraph, Table
from reports.compare import change_text, metric_value
from reports.format import fmt_ms, fmt_rps
from reports.history import TREND_METRICS, Entry, History, Latest, Trend, trend_load
from reports.loads import describe_common
from reports.schema import simulated_targets
from targets.files import atomic_write_bytes

CHART_DIR = "charts"
MARKDOWN_FILE, HTML_FILE = "history.md", "history.html"


@dataclass(frozen=True)
class Written:
    markdown: Path
    html: Path
    charts: tuple[Path, ...]


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _bundles(entry: Entry) -> str:
    shas = {c["bundle"]: c["bundle_sha256"] for c in entry.record["cells"]}
    return ", ".join(f"{name} {_short(sha)}" for name, sha in shas.items())


def entries_table(history: History) -> Table:
    rows = []
    for e in history.entries:
        r = e.record
        dirty = " (uncommitted changes)" if r["git_dirty"] else ""
        cells = f"{len(r['cells'])}" + (f" (+{len(r['left_out'])} not complete)"
                                         if r["left_out"] else "")
        rows.append((r["time"], e.id, r["deploybench"], _short(r["git_commit"]) + dirty,
                     _bundles(e), cells))
    return Table(("time", "entry", "version", "commit", "bundles (sha256)", "cells"),
                 tuple(rows), caption="Oldest first. A bundle's sha256 is its weights': "
                                      "when it changes, the model itself changed.")


def verdict_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1])) \
        or "nothing measured in both"


def latest_blocks(latest: Latest | None, history: History) -> list[Block]:
    blocks: list[Block] = [Heading("The latest entry against the one before")]
    if latest is None:
        blocks.append(Paragraph(f"One entry ({history.latest.id}): nothing to compare yet. "
                                "The next suite run adds the second."))
        return blocks
    blocks.append(Paragraph(
        f"{latest.latest.id} against {latest.previous.id}, cell by cell with `deploybench "
        "compare`'s statistics (the previous entry's run as A, the latest's as B). Listed: "
        "every change in the worse direction not within noise."))
    notes = list(latest.notes)
    broken, gone = latest.broken, latest.gone
    if broken:
        notes.append(f"complete in the previous entry, NOT complete in the latest (failed or "
                     f"partial; `--fail-on` fails on it): {', '.join(broken)}")
    if gone:
        notes.append(f"only in the previous entry (not in the latest suite): "
                     f"{', '.join(gone)}")
    if latest.only_in_latest:
        notes.append(f"new in the latest entry: {', '.join(latest.only_in_latest)}")
    if notes:
        blocks.append(Bullets(tuple(notes)))
    for cell in latest.cells:
        blocks.append(Heading(f"`{cell.cell}`", 3))
        blocks.append(Paragraph(f"Verdicts: {verdict_counts(cell.verdicts())}."))
        facts = [*cell.notes, *cell.comparison.failed_in_b, *cell.comparison.notes]
        if facts:
            blocks.append(Bullets(tuple(facts)))
        worse = cell.worse
        if worse:
            blocks.append(Table(
                ("deployment", "load", "metric", "previous", "latest", "change", "verdict"),
                tuple((c.target, c.load, c.metric, metric_value(c.metric, c.a.value),
                       metric_value(c.metric, c.b.value), change_text(c), c.verdict)
                      for c in worse),
                numeric=frozenset({3, 4, 5}),
                caption="± the 95% half-width; untested: the spread is one run's windows "
                        "(`--trials 3` tests it)"))
        else:
            blocks.append(Paragraph("No change in the worse direction beyond the noise."))
    return blocks


def _figure(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{fmt_ms(v)} ms" if metric == "p99" else f"{fmt_rps(v)} req/s"


def figures_table(by_metric: dict[str, dict[str, list[float | None]]]) -> Table:
    """Each deployment's figures in the entry before the latest and in the latest."""
    names = list(dict.fromkeys(n for series in by_metric.values() for n in series))
    rows = []
    for name in names:
        row = [name]
        for metric, _, _ in TREND_METRICS:
            values = by_metric.get(metric, {}).get(name) or [None]
            last = _figure(metric, values[-1])
            row.append(last if len(values) < 2 else f"{_figure(metric, values[-2])} -> {last}")
        rows.append(tuple(row))
    return Table(("deployment", *(what for _, what, _ in TREND_METRICS)), tuple(rows),
                 numeric=frozenset({1, 2, 3}),
                 caption="the entry before the latest -> the latest; - : not met or not "
                         "measured in that entry")


def trend_blocks(history: History, trend: Trend, charts: dict[str, bytes]) -> list[Block]:
    blocks: list[Block] = [Heading("Trend"), Paragraph(
        "Per cell, one chart per figure, one line per deployment, over the entries in time "
        "order: the capacity within the objective and the p99 at the common load (the "
        "decision's figures), and the peak throughput.")]
    for cell_id, by_metric in trend.items():
        blocks.append(Heading(f"`{cell_id}`", 3))
        load = describe_common(trend_load(history, cell_id))
        blocks.append(Paragraph(f"p99 at {load} in every entry (the latest entry's common "
                                "load)."))
        blocks.append(figures_table(by_metric))
        for metric, what, _ in TREND_METRICS:
            name = historychart.chart_name(cell_id, metric)
            if name in charts:
                blocks.append(Chart(name, f"{cell_id}: {what}",
                                    f"{what} of each deployment of {cell_id} per entry"))
            elif by_metric.get(metric):
                blocks.append(Paragraph(f"{what}: not met or not measured in any entry."))
    return blocks


def build(history: History, trend: Trend, latest: Latest | None,
          charts: dict[str, bytes]) -> list[Block]:
    rec = history.latest.record
    blocks: list[Block] = [
        Heading(f"History of the suite {rec['suite']}", 1),
        Paragraph(f"{len(history.entries)} entries on {rec['machine']['label']}, from "
                  f"{history.dir}. Each entry is one suite folder's complete cells, keyed "
                  "by the project version and commit, each bundle's sha256 and the time."),
    ]
    aside = [f"{entry_id} left out: {why}" for entry_id, why in history.left_out]
    simulated = sorted({cell_id for e in history.entries for cell_id in history.cell_ids()
                        if (run := history.run(e, cell_id)) and simulated_targets(run)})
    if simulated:
        aside.insert(0, f"**SIMULATED**: {', '.join(simulated)} ran the test target "
                        "(`--targets fake`): a fixed service time under a simulated load, "
                        "not a measurement")
    if aside or history.notes:
        blocks.append(Bullets(tuple([*aside, *history.notes])))
    blocks += [Heading("Entries"), entries_table(history)]
    blocks += latest_blocks(latest, history)
    blocks += trend_blocks(history, trend, charts)
    return blocks


def write(history: History, trend: Trend, latest: Latest | None, out: Path) -> Written:
    """history.md, history.html (self-contained) and charts/ in ``out``."""
    charts = historychart.render_all(history, trend)
    blocks = build(history, trend, latest, charts)
    written = []
    for name, png in charts.items():
        path = out / CHART_DIR / f"{name}.png"
        atomic_write_bytes(path, png)
        written.append(path)
    md = out / MARKDOWN_FILE
    atomic_write_bytes(md, markdown.render(
        blocks, {n: f"{CHART_DIR}/{n}.png" for n in charts}).encode())
    page = out / HTML_FILE
    title = f"deploybench history: {history.latest.record['suite']}"
    atomic_write_bytes(page, html.render(blocks, charts, title).encode())
    return Written(md, page, tuple(written))
