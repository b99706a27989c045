"""Dynamic batching's settings and its record: what the harness and the servers share.

``--batching max_batch=N,max_wait_ms=M`` puts a batcher between a served target's requests
and its model (:mod:`targets.batcher`): requests queue, and one forward pass serves up to N
examples of them, or whatever arrived within M ms of the first. Each server process that
batches appends one line per forward pass to ``DIR/batches-PID.log`` (``--batch-log-dir``):

    <wall clock, s> <requests served> <examples served>

and the harness reads them back after the load (:func:`read_batch_log`) to count the batch
sizes formed during each stage.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

#: The defaults of ``--batching both`` and of a spec that leaves a key out, chosen by
#: measurement (benchmarks/batching_defaults.py: one gthread Flask worker on one CPU,
#: `digits`, closed-loop clients, settings alternated over 6 rounds; December 2026, on a
#: shared 2-core machine whose rates swung +-30% between rounds, so the within-round
#: ratios to unbatched are the figures to trust). With 16 clients every setting served
#: more: max_wait_ms=0 1.14-1.23x (max_batch 8, 16, 32 alike), 1 or 2 ms 1.30-1.33x; a
#: busy worker's requests queue during each forward pass, so batches form without
#: waiting. With 1 client a wait is pure delay: 1 ms served 0.29x and 2 ms 0.19x, while
#: 0 lets the lone caller run its own request (no hand-off) and matched unbatched (1.05x,
#: medians of 6 rounds). Hence no wait by default: most of the gain under load, no cost
#: when light. max_batch=16 matches the usual 16 users and bounds the threads a worker
#: needs (one per waiting request). On `vision` (a CNN, ~50 ms an example here) batching
#: neither helped nor hurt at 16 clients (0.92-1.14x): the model's work is per example.
#: Confirmed with the tool itself (``deploybench run --targets flask,fastapi,grpc
#: --bundle digits --scenario serving --batching both[,max_wait_ms=1]``, two runs back to
#: back): at 16 users, wait 0 served 1.25x (flask; mean batch 1.16), 1.32x (fastapi; 6.8)
#: and 0.91x (grpc; 1.27) the unbatched throughput, and 0.79-1.12x at 1 user; wait 1 ms
#: served 1.73x, 1.50x and 1.16x at 16 users (mean batches 8.0, 15.8, 8.9) but 0.23-0.33x
#: at 1 user and 0.49-0.83x at 4 (a closed-loop batch of 4 waits out the whole 1 ms).
#: Triton's dynamic batcher also defaults to no queue delay.
DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_WAIT_MS = 0.0
#: The batch log's file names in its folder.
LOG_GLOB = "batches-*.log"
#: A worker's batch log is flushed at most this long after a forward pass.
FLUSH_S = 0.5


@dataclass(frozen=True)
class BatchingSpec:
    #: Examples per forward pass at most (a request is never split: one larger than this
    #: is served alone).
    max_batch: int = DEFAULT_MAX_BATCH
    #: How long the first request of a batch waits for others (0: only those already queued).
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS

    def __str__(self) -> str:
        return f"max_batch={self.max_batch},max_wait_ms={self.max_wait_ms:g}"

    @classmethod
    def parse(cls, text: str) -> BatchingSpec:
        """``max_batch=N,max_wait_ms=M`` (either may be left out: its default); raises
        ValueError naming what is wrong."""
        values: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in ("max_batch", "max_wait_ms"):
                raise ValueError(f"bad batching setting {part!r}: write max_batch=N and/or "
                                 "max_wait_ms=M, e.g. max_batch=16,max_wait_ms=2")
            if key in values:
                raise ValueError(f"batching setting {key} given twice")
            values[key] = value.strip()
        try:
            max_batch = int(values.get("max_batch", DEFAULT_MAX_BATCH))
            max_wait_ms = float(values.get("max_wait_ms", DEFAULT_MAX_WAIT_MS))
        except ValueError:
            raise ValueError(f"bad batching settings {text!r}: max_batch is a whole number, "
                             "max_wait_ms a number of milliseconds") from None
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (got {max_batch})")
        if not 0 <= max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be between 0 and 1000 (got {max_wait_ms:g})")
        return cls(max_batch, max_wait_ms)


class BatchLog:
    """One server process's record of the batches it formed: thread-safe, buffered, flushed
    at most :data:`FLUSH_S` after a batch (and by :meth:`close`)."""

    def __init__(self, folder: Path | str, flush_s: float = FLUSH_S) -> None:
        #: Flushed at most this long after a batch (0: at every batch, for a process that
        #: may be killed without warning, as Ray's replicas are).
        self.flush_s = flush_s
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"batches-{os.getpid()}.log"
        self._file: IO[str] | None = open(self.path, "a", encoding="ascii")  # noqa: SIM115
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def record(self, requests: int, examples: int) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(f"{time.time():.6f} {requests} {examples}\n")
                now = time.monotonic()
                if now - self._flushed >= self.flush_s:
                    self._file.flush()
                    self._flushed = now
            except OSError as exc:
                self._give_up(exc)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                except OSError as exc:
                    self._give_up(exc)
                self._flushed = time.monotonic()

    def _give_up(self, exc: OSError) -> None:
        """Logging is best effort: a full or broken disk stops the log (said once on
        stderr, where the server's log is), never the serving."""
        print(f"warning: batch log {self.path}: {exc}; no more batches are logged",
              file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            assert self._file is not None
            self._file.close()
        self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_batch_log(folder: Path | str) -> np.ndarray:
    """Every batch recorded under ``folder`` by any process, sorted by time: an array of
    rows (wall clock, requests, examples); empty (shape (0, 3)) when there are none. A
    line cut short by a process killed mid-write is skipped."""
    rows: list[tuple[float, float, float]] = []
    for path in sorted(Path(folder).glob(LOG_GLOB)):
        text = path.read_text(encoding="ascii", errors="replace")
        # A last line without its newline may have been cut short mid-write: skipped.
        for line in text.splitlines()[:None if text.endswith("\n") else -1]:
            parts = line.split()
            if len(parts) != 3:
                continue
            try:
                rows.append((float(parts[0]), float(parts[1]), float(parts[2])))
            except ValueError:
                continue
    out = np.array(rows, dtype=float).reshape(-1, 3)
    return out[np.argsort(out[:, 0], kind="stable")] if len(out) else out


def sizes_between(log: np.ndarray, start: float, end: float) -> dict[int, int]:
    """How many forward passes served each number of requests in ``[start, end)``."""
    if not len(log):
        return {}
    mask = (log[:, 0] >= start) & (log[:, 0] < end)
    sizes, counts = np.unique(log[mask, 1].astype(int), return_counts=True)
    return {int(s): int(c) for s, c in zip(sizes, counts, strict=True)}
