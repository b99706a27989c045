"""What a suite writes and what a history keeps: the files shared by ``deploybench suite``
(:mod:`harness.suites`), its index report (:mod:`reports.suiteindex`) and ``deploybench
history`` (:mod:`reports.history`).

A **suite folder** (``deploybench suite FILE --out DIR``)::

    DIR/suite.json          the manifest (:class:`SuiteManifest`), rewritten after each cell
    DIR/cells/CELL_ID/      each cell's ordinary run folder (run.json, report.md, ...)
    DIR/attempts/CELL_ID-N/ an earlier failed or partial attempt at a cell, moved aside
    DIR/suite.md, DIR/suite.html, DIR/charts/   the index report

A **history folder** (one per suite name, default ``results/history/NAME``) holds one entry
per suite folder (:class:`HistoryEntry`), rewritten when that suite folder is resumed::

    HDIR/ENTRY_ID/entry.json
    HDIR/ENTRY_ID/runs/CELL_ID.json.gz   a copy of each complete cell's run.json

Entries are compact copies, not links: a history outlives the suite folders, whose samples
are large, and is what a CI job keeps between runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

MANIFEST_FILE = "suite.json"
CELLS_DIR = "cells"
ATTEMPTS_DIR = "attempts"
ENTRY_FILE = "entry.json"
RUNS_DIR = "runs"
SUITE_SCHEMA = 1
HISTORY_SCHEMA = 1

#: A cell's status in the manifest. ``complete``: its run finished with every target ok;
#: ``failed``: the run exited with an error or a target failed; ``partial``: the run was
#: cut short (interrupted, killed); ``pending``: not started in any invocation yet.
COMPLETE, FAILED, PARTIAL, PENDING = "complete", "failed", "partial", "pending"
CELL_STATUSES = (COMPLETE, FAILED, PARTIAL, PENDING)
#: The suite's status: ``running`` while cells run, ``complete`` when every cell is,
#: ``incomplete`` when it ended with failed or pending cells, ``interrupted`` on Ctrl-C.
RUNNING, INCOMPLETE, INTERRUPTED = "running", "incomplete", "interrupted"


class SuiteError(Exception):
    """A suite file, suite folder or history that cannot be used, in words for the user."""


class MachineClass(TypedDict):
    """The kind of machine, not the machine: histories compare runs of one class (CI
    runners are new machines of one kind each time). ``label`` is what is compared."""

    cpu_model: str | None
    cpu_count: int | None
    memory_gb: float | None
    label: str


class CellRecord(TypedDict):
    """One cell of a suite: one ordinary ``deploybench run``."""

    id: str
    #: 1-based position in the suite's order.
    index: int
    #: The bundle's label (digits, vision, a user bundle's name).
    bundle: str
    #: The run arguments that choose the bundle (``--bundle X`` or ``--model ...``).
    bundle_args: list[str]
    scenario: str
    targets: list[str]
    #: This cell's values of the suite's matrix keys, as written in the suite file.
    matrix: dict[str, Any]
    #: Every run option of the cell (the suite's fixed options and its matrix values).
    options: dict[str, Any]
    #: The ``deploybench run`` arguments, without ``--out``.
    argv: list[str]
    #: The run folder, relative to the suite folder (``cells/ID``).
    dir: str
    status: str
    exit_code: int | None
    wall_s: float | None
    #: What the cell should take (scenario load time x results x trials, plus start-up).
    estimated_s: float
    #: Runs started for this cell, over every invocation of the suite.
    attempts: int
    #: Why a cell failed or is partial, in words.
    error: NotRequired[str]


class SuiteManifest(TypedDict):
    suite_schema: int
    name: str
    description: str
    #: The suite file's absolute path.
    file: str
    #: sha256 of the normalised suite (what decides whether a folder can be resumed).
    suite_hash: str
    status: str
    started_at: str
    finished_at: str | None
    machine: MachineClass
    deploybench: str
    git_commit: str | None
    cells: list[CellRecord]
    #: The history entry this folder wrote, when it did.
    history_entry: NotRequired[str]


class HistoryCell(TypedDict):
    id: str
    bundle: str
    bundle_sha256: str | None
    scenario: str
    matrix: dict[str, Any]
    targets: list[str]
    #: The copy of its run.json, relative to the entry folder (runs/ID.json.gz).
    run: str


class HistoryEntry(TypedDict):
    history_schema: int
    suite: str
    suite_hash: str
    machine: MachineClass
    deploybench: str
    git_commit: str | None
    git_dirty: bool | None
    #: When the suite folder's last cell finished (ISO 8601, UTC): the entry's time.
    time: str
    #: The suite folder it was taken from (absolute).
    source: str
    #: That suite folder's ``started_at``: with ``source``, what tells a resumed suite
    #: (its entry is replaced) from a new suite run in a reused folder (a new entry).
    source_started_at: NotRequired[str]
    #: Its complete cells only; the others are named in ``left_out``.
    cells: list[HistoryCell]
    left_out: list[str]


def machine_class(metadata: dict[str, Any]) -> MachineClass:
    """The class of the machine a run's metadata (or harness.metadata.collect_cpu())
    describes."""
    model, count, memory = (metadata.get("cpu_model"), metadata.get("cpu_count"),
                            metadata.get("memory_gb"))
    gib = f"{round(memory):d} GiB" if isinstance(memory, (int, float)) else "? GiB"
    label = f"{model or 'unknown CPU'}, {count or '?'} CPUs, {gib}"
    return {"cpu_model": model, "cpu_count": count, "memory_gb": memory, "label": label}


def _load_json(file: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise SuiteError(f"no {file.name} in {file.parent}: not a {what}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{file} cannot be read ({exc})") from None
    if not isinstance(doc, dict):
        raise SuiteError(f"{file} is not a {what} (not a JSON object)")
    return doc


def load_manifest(suite_dir: Path) -> SuiteManifest:
    """A suite folder's manifest; SuiteError when there is none or it is not one."""
    doc = _load_json(suite_dir / MANIFEST_FILE, "deploybench suite folder")
    if doc.get("suite_schema") != SUITE_SCHEMA:
        raise SuiteError(f"{suite_dir / MANIFEST_FILE}: suite schema "
                         f"{doc.get('suite_schema')!r}, this deploybench reads {SUITE_SCHEMA}")
    return doc  # type: ignore[return-value]


def load_entry(entry_dir: Path) -> HistoryEntry:
    """A history entry; SuiteError when there is none or it is not one."""
    doc = _load_json(entry_dir / ENTRY_FILE, "deploybench history entry")
    if doc.get("history_schema") != HISTORY_SCHEMA:
        raise SuiteError(f"{entry_dir / ENTRY_FILE}: history schema "
                         f"{doc.get('history_schema')!r}, this deploybench reads "
                         f"{HISTORY_SCHEMA}")
    return doc  # type: ignore[return-value]
