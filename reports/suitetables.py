"""The index's tables: the suite's header, and per bundle every cell's decision and every
deployment's figures side by side; the cells that did not complete."""

from __future__ import annotations

from datetime import datetime

from reports.blocks import Block, Heading, Paragraph, Table
from reports.costs import ARCH
from reports.decision import Decision
from reports.figures import Figures
from reports.format import NONE, fmt_ms, fmt_rps, fmt_usd, stage_load
from reports.loads import describe_common
from reports.suitecells import SuiteCell, fmt_value
from reports.suiteschema import CELL_STATUSES, COMPLETE, SuiteManifest

WHAT_A_CELL_IS = (
    "A cell is one ordinary `deploybench run`: one bundle, one scenario and one combination "
    "of the suite's matrix of run options, with its own run folder (`cells/CELL`), run.json "
    "and report; the figures below are read from those run.json files.")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _elapsed(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() \
            if start and end else None
    except ValueError:
        return None


def header(manifest: SuiteManifest, cells: list[SuiteCell]) -> list[Block]:
    counts = {s: sum(1 for c in cells if c.record["status"] == s) for s in CELL_STATUSES}
    walls = [c.record["wall_s"] for c in cells if c.record["wall_s"] is not None]
    fake = sorted({name for c in cells for name in c.simulated})
    commit = manifest.get("git_commit") or "unknown"
    lines = [
        f"Suite **{manifest['status']}**: {len(cells)} cells, "
        + ", ".join(f"{counts[s]} {s}" for s in CELL_STATUSES) + ".",
        f"Machine class: {manifest['machine']['label']}. deploybench "
        f"{manifest.get('deploybench')}, commit {commit}.",
        f"Wall time: {_duration(sum(walls) if walls else None)} in the cells' runs "
        f"({len(walls)} timed); the suite first started {manifest.get('started_at')} and "
        + (f"last finished {manifest['finished_at']} "
           f"({_duration(_elapsed(manifest.get('started_at'), manifest['finished_at']))}, "
           "with any pause between a stop and its resume)."
           if manifest.get("finished_at") else "has not finished."),
        WHAT_A_CELL_IS,
    ]
    blocks: list[Block] = [
        Heading(f"{'SIMULATED: ' if fake else ''}deploybench suite: {manifest['name']}", 1)]
    if manifest.get("description"):
        blocks.append(Paragraph(manifest["description"]))
    if fake:
        blocks.append(Paragraph(
            f"**Simulated figures, not a measurement**: {', '.join(fake)} ran as test "
            "targets (`--targets fake`) in some cells: a fixed service time under a simulated "
            "load, with no model and no server. Their figures say nothing about a "
            "deployment."))
    blocks.append(Paragraph(" ".join(lines)))
    return blocks


def names(figs: tuple[Figures, ...] | list[Figures]) -> str:
    return ", ".join(f.name for f in figs) or NONE


def report_link(cell: SuiteCell) -> str:
    report = cell.folder / "report.html"
    return f"[report]({cell.record['dir']}/report.html)" if report.exists() else NONE


def _valid(cell: SuiteCell) -> str:
    invalid, total = cell.invalid_stages()
    return f"{total - invalid}/{total}" if cell.run is not None else NONE


def _marks(cell: SuiteCell) -> str:
    marks = []
    if cell.record["status"] != COMPLETE:
        marks.append(cell.record["status"].upper())
    if cell.simulated:
        marks.append("SIMULATED")
    return f" ({', '.join(marks)})" if marks else ""


def _chosen(d: Decision | None) -> tuple[str, str, str]:
    if d is None:
        return NONE, NONE, NONE
    if d.best is None:
        return "none met the objective", NONE, NONE
    service = NONE
    if d.best_service is not None:
        service = d.best_service.name + (f" (ties: {names(d.service_ties)})"
                                         if d.service_ties else "")
    return d.best.name, names(d.ties), service


def decision_table(cells: list[SuiteCell], matrix_keys: list[str]) -> Table:
    rows = []
    for cell in cells:
        best, ties, service = _chosen(cell.decision)
        if cell.run is None:
            best = f"no run ({cell.record['status']})"
        rows.append((cell.id + _marks(cell), cell.record["scenario"],
                     *(fmt_value(cell.record["matrix"].get(k, NONE)) for k in matrix_keys),
                     best, ties, service, _valid(cell), report_link(cell)))
    objective = next((c.decision.objective.describe() for c in cells if c.decision), None)
    return Table(("cell", "scenario", *matrix_keys, "chosen", "tied with", "best as a service",
                  "VALID stages", "report"), tuple(rows),
                 caption=f"The decision of each cell (objective: {objective or NONE}): the "
                         "cheapest deployment meeting it, the best by p99 among those costing "
                         "the same; ties cannot be told apart from it. Best as a service: "
                         "when in-process is chosen, the best deployment serving over a wire.")


def _capacity(f: Figures) -> str:
    if f.capacity is None or f.capacity_stage is None:
        return "missed" if f.ok else "failed"
    return f"{fmt_rps(f.capacity.median)} at {stage_load(f.capacity_stage)}"


def _common(f: Figures, d: Decision) -> tuple[str, str]:
    if f.common_p99 is None:
        return NONE, describe_common(d.load)
    invalid = "" if f.common_stage is None or f.common_stage.get("valid", True) \
        else " (INVALID)"
    return fmt_ms(f.common_p99.median) + invalid, describe_common(d.load)


def figures_table(cells: list[SuiteCell]) -> Table:
    rows = []
    for cell in cells:
        d = cell.decision
        if d is None:
            continue
        for f in d.figures:
            p99, load = _common(f, d)
            cost = f.monthly_usd.get(ARCH)
            note = f.error or f.miss or ""
            rows.append((cell.id + _marks(cell), f.name, _capacity(f), p99, load,
                         fmt_ms(f.min_p50_ms), fmt_usd(cost) if cost is not None else NONE,
                         note))
    return Table(("cell", "deployment", "capacity req/s (stage)", "p99 ms at common load",
                  "common load", "min p50 ms", "monthly USD", "note"), tuple(rows),
                 frozenset({3, 5, 6}),
                 caption="Capacity: the highest throughput of a VALID stage within the "
                         "objective, on one instance (missed: no stage met it; failed: the "
                         "deployment did not run). p99 at the load every deployment of the "
                         "cell ran; min p50 at its least loaded stage; monthly cost at the "
                         "run's volume where priced. A PARTIAL cell's figures are what it "
                         "measured before it stopped.")


def unfinished(cells: list[SuiteCell]) -> list[Block]:
    left = [c for c in cells if not c.complete]
    if not left:
        return []
    rows = tuple((c.id, c.record["status"],
                  NONE if c.record["exit_code"] is None else str(c.record["exit_code"]),
                  str(c.record["attempts"]),
                  c.record.get("error") or c.missing or NONE) for c in left)
    return [Heading("Cells not complete"),
            Table(("cell", "status", "exit code", "attempts", "error"), rows,
                  frozenset({2, 3}),
                  caption="Failed cells exited with an error or had a deployment fail; "
                          "partial ones were cut short (their figures above are what they "
                          "measured); pending ones have not run. Re-running the suite with "
                          "the same --out runs them again.")]
