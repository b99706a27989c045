"""Suite folders written by hand around run folders that exist already (a manifest over
DIR/cells/ID/run.json), for the history's tests: they need suite folders, not the suite
command that makes them (tested on its own)."""

from __future__ import annotations

import json
from pathlib import Path

from reports.schema import load_run
from reports.suiteschema import (
    CELLS_DIR,
    COMPLETE,
    INCOMPLETE,
    MANIFEST_FILE,
    SUITE_SCHEMA,
    CellRecord,
    MachineClass,
    SuiteManifest,
    machine_class,
)


def write_manifest(suite_dir: Path, cells: dict[str, str], name: str = "nightly",
                   finished_at: str | None = "2026-12-01T00:00:00+00:00",
                   machine: MachineClass | None = None, suite_hash: str = "1" * 64,
                   version: str = "0.1.0", commit: str | None = "a" * 40,
                   bundle: str = "digits") -> SuiteManifest:
    """Write DIR/suite.json naming ``cells`` (id -> status); a cell's run folder is
    DIR/cells/ID, its run.json written by the caller (for a complete cell at least). The
    machine class is the first run's unless given."""
    records: list[CellRecord] = []
    for i, (cell_id, status) in enumerate(cells.items(), start=1):
        run_dir = suite_dir / CELLS_DIR / cell_id
        targets: list[str] = []
        if (run_dir / "run.json").exists():
            run = load_run(run_dir)
            targets = [t["name"] for t in run["targets"]]
            machine = machine or machine_class(dict(run["metadata"]))
        records.append({
            "id": cell_id, "index": i, "bundle": bundle, "bundle_args": ["--bundle", bundle],
            "scenario": "smoke", "targets": targets, "matrix": {}, "options": {},
            "argv": ["--bundle", bundle, "--scenario", "smoke"],
            "dir": f"{CELLS_DIR}/{cell_id}", "status": status,
            "exit_code": 0 if status == COMPLETE else 1, "wall_s": 10.0,
            "estimated_s": 10.0, "attempts": 1})
    manifest: SuiteManifest = {
        "suite_schema": SUITE_SCHEMA, "name": name, "description": "for tests",
        "file": str(suite_dir / f"{name}.yaml"), "suite_hash": suite_hash,
        "status": COMPLETE if all(s == COMPLETE for s in cells.values()) else INCOMPLETE,
        "started_at": "2026-11-30T23:00:00+00:00", "finished_at": finished_at,
        "machine": machine or machine_class({}), "deploybench": version,
        "git_commit": commit, "cells": records}
    suite_dir.mkdir(parents=True, exist_ok=True)
    (suite_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

