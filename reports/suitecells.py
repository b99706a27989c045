"""A suite folder's cells as the index reads them: each manifest record with its run.json
(upgraded) and its decision, or why there is none (pending, unreadable, never written)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.decision import Decision, decide
from reports.schema import RUN_FILE, ResultFileError, RunDoc, load_run, simulated_targets
from reports.suiteschema import COMPLETE, PENDING, CellRecord, SuiteManifest


def fmt_value(value: Any) -> str:
    """A matrix value as the suite file wrote it (a list joined with commas, as the
    command line takes it)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@dataclass(frozen=True)
class SuiteCell:
    record: CellRecord
    run: RunDoc | None
    #: Why the cell has no run to show (its run.json missing or unreadable).
    missing: str | None
    decision: Decision | None
    #: The cell's run folder.
    folder: Path

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def complete(self) -> bool:
        return self.record["status"] == COMPLETE

    @property
    def simulated(self) -> list[str]:
        return simulated_targets(self.run) if self.run is not None else []

    @property
    def one_run(self) -> bool:
        """Figures from one run (no trials to test them)."""
        return self.run is not None and int(self.run["metadata"].get("trials") or 1) < 2

    def invalid_stages(self) -> tuple[int, int]:
        """(INVALID stages, stages) over the run's results."""
        if self.run is None:
            return 0, 0
        stages = [s for t in self.run["targets"] for s in t["stages"]]
        return sum(1 for s in stages if not s.get("valid", True)), len(stages)

    def invalid_reason(self) -> str | None:
        """The most common reason its INVALID stages give, up to its colon ("too few
        requests for p99", "unstable")."""
        if self.run is None:
            return None
        reasons = Counter(str(s["reasons"][0]).split(":", 1)[0]
                          for t in self.run["targets"] for s in t["stages"]
                          if not s.get("valid", True) and s.get("reasons"))
        return reasons.most_common(1)[0][0] if reasons else None

    def label(self, with_scenario: bool) -> str:
        """The cell's options in a few words: its matrix values (and scenario)."""
        parts = [f"{k}={fmt_value(v)}" for k, v in self.record["matrix"].items()]
        if with_scenario or not parts:
            parts.insert(0, self.record["scenario"])
        return ", ".join(parts)


def load_cell(suite_dir: Path, record: CellRecord) -> SuiteCell:
    folder = suite_dir / record["dir"]
    if not (folder / RUN_FILE).exists():
        why = ("not started yet" if record["status"] == PENDING else
               f"its run wrote no {RUN_FILE} (in {record['dir']})")
        return SuiteCell(record, None, why, None, folder)
    try:
        run = load_run(folder)
    except (ResultFileError, OSError) as exc:
        return SuiteCell(record, None, str(exc), None, folder)
    try:
        decision: Decision | None = decide(run)
    except (KeyError, TypeError, ValueError) as exc:
        # A run.json that loads but cannot be decided on is shown as such, not a crash.
        return SuiteCell(record, run, f"its run.json cannot be read as a result ({exc!r})",
                         None, folder)
    return SuiteCell(record, run, None, decision, folder)


def load_cells(suite_dir: Path, manifest: SuiteManifest) -> list[SuiteCell]:
    return [load_cell(suite_dir, r) for r in manifest["cells"]]


def by_bundle(cells: list[SuiteCell]) -> dict[str, list[SuiteCell]]:
    """The cells grouped by bundle, in the suite's order."""
    out: dict[str, list[SuiteCell]] = {}
    for cell in sorted(cells, key=lambda c: c.record["index"]):
        out.setdefault(cell.record["bundle"], []).append(cell)
    return out
