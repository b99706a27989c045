"""Writing result files: a fresh run folder, ``run.json`` atomically, samples as they come.

The format itself is defined in :mod:`reports.schema` (reports read it; this writes it).
A run folder is never overwritten.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np

from reports.schema import (
    RUN_FILE,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    ParityResult,
    RunDoc,
    StageResult,
    TargetResult,
)
from reports.stageblocks import LatencySummary
from targets.files import atomic_write_bytes

__all__ = [
    "SCHEMA_VERSION", "LatencySummary", "ParityResult", "RunDoc", "SampleWriter",
    "StageResult", "TargetResult", "atomic_write_text", "choose_out_dir", "write_run",
]


def choose_out_dir(requested: Path) -> tuple[Path, str | None]:
    """``requested`` if it is new or empty; otherwise the next free ``NAME-2``, ``NAME-3``...

    Returns the folder (created) and a note to print when it is not the one asked for.
    """
    if not requested.exists() or (requested.is_dir() and not any(requested.iterdir())):
        requested.mkdir(parents=True, exist_ok=True)
        return requested, None
    stem = re.sub(r"-\d+$", "", requested.name)
    n = 2
    while True:
        candidate = requested.with_name(f"{stem}-{n}")
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            n += 1
            continue
        return candidate, f"{requested} already holds a run; writing to {candidate} instead"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename: readers see the old file or the new, never half."""
    atomic_write_bytes(path, text.encode())


def write_run(out_dir: Path, doc: RunDoc) -> Path:
    path = out_dir / RUN_FILE
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path


class SampleWriter:
    """Appends every request's raw sample to ``samples.csv.gz`` as stages finish.

    Each append is its own gzip member (gzip readers concatenate them), so a run cut
    short still leaves every finished stage's samples readable.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with gzip.open(path, "wt") as fh:
            fh.write(",".join(SAMPLE_COLUMNS) + "\n")

    def append(self, target: str, stage: int, concurrency: int | None, start_s: np.ndarray,
               latency_ms: np.ndarray, ok: np.ndarray, phase: np.ndarray,
               cold: np.ndarray, send_delay_ms: np.ndarray) -> None:
        """One stage's samples; ``concurrency`` None (open loop) is written as 0."""
        prefix = f"{target},{stage},{concurrency or 0},"
        lines = [
            f"{prefix}{s:.6f},{lat:.4f},{int(k)},{p},{int(c)},{d:.4f}\n"
            for s, lat, k, p, c, d in zip(start_s.tolist(), latency_ms.tolist(), ok.tolist(),
                                          phase.tolist(), cold.tolist(),
                                          send_delay_ms.tolist(), strict=True)
        ]
        with gzip.open(self.path, "at") as fh:
            fh.writelines(lines)
