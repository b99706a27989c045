"""The log of live predictions (``--log-predictions RATE``): a fraction of the requests a
target serves, appended with their input, output, model version and time.

**The store is SQLite, one database per serving process** (``DIR/predictions-PID.sqlite``),
not Parquet. Why:

* *It loses nothing when a target dies.* Each flush is a transaction; a worker killed
  mid-run (the OOM killer, SIGKILL at the end of a stage, a crash) keeps every row it
  committed. A Parquet file is readable only once its writer has closed it (the footer
  is written last), so a killed worker loses its whole open file.
* *Many processes write at once* (gunicorn's and uvicorn's workers, gRPC's one server
  per CPU, every Lambda environment): one file each, so no writer waits on another's lock.
* *It is in Python's standard library*, readable by any SQLite tool and by pandas
  (``read_sql``), and needs nothing in the containers or the Lambda environments.

Parquet's columnar compression matters for months of traffic, not for a benchmark's
minutes; an export is one ``pandas.read_sql(...).to_parquet(...)`` away.

Rows are written off the request path where the deployment allows it: a background
thread per process takes them from a queue and commits every :data:`FLUSH_S` or
:data:`FLUSH_ROWS` rows. A Lambda environment has no time after its answer (it is frozen),
so it writes in the invocation (``synchronous=True``), as a function that logged to its
own store would.

Which requests are logged is exact, not random: with rate r the n-th request is logged
when ``floor(n * r)`` steps up, so 1.0 logs every request and 0.1 every tenth.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The log's databases in its folder.
LOG_GLOB = "predictions-*.sqlite"
#: A background writer commits at least this often, and whenever this many rows wait.
FLUSH_S = 0.5
FLUSH_ROWS = 256
#: Rows waiting beyond this are dropped and counted (the store cannot keep up; the
#: request path never blocks on it).
MAX_QUEUED = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    -- wall clock (Unix seconds) when the answer was ready
    ts REAL NOT NULL,
    bundle TEXT NOT NULL,
    -- the bundle's name and the first 12 hex digits of its weights' SHA-256, when known
    model_version TEXT NOT NULL,
    -- the request's float32 batch, C order, and its shape as JSON ([B, ...])
    input_shape TEXT NOT NULL,
    input BLOB NOT NULL,
    -- the answer: a JSON list of {"label": int, "probabilities": [float, ...]}
    output TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def model_version(bundle_name: str, info: dict[str, Any]) -> str:
    """``NAME@SHA12`` from the bundle's info (its weights' checksum), or ``NAME``."""
    digest = info.get("sha256")
    return f"{bundle_name}@{digest[:12]}" if isinstance(digest, str) and digest else bundle_name


class Sampler:
    """Which requests are logged at ``rate``: exactly ``floor(n * rate)`` of the first n."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._n = 0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self._n += 1
            return math.floor(self._n * self.rate) > math.floor((self._n - 1) * self.rate)


@dataclass(frozen=True)
class LoggedRequest:
    id: int
    ts: float
    bundle: str
    model_version: str
    input: np.ndarray
    #: (label, probabilities) per example.
    output: list[tuple[int, tuple[float, ...]]]


class PredictionLog:
    """One serving process's log: :meth:`record` from the request path, :meth:`close` at
    the process's exit (flushes what waits). Open it in the process that writes (after
    a server's fork)."""

    def __init__(self, directory: Path | str, rate: float, bundle: str, version: str, *,
                 synchronous: bool = False, cpus: list[int] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"predictions-{os.getpid()}.sqlite"
        self.bundle, self.version = bundle, version
        self.synchronous = synchronous
        self.sample = Sampler(rate)
        #: Rows dropped because the writer could not keep up.
        self.dropped = 0
        self._db = self._open()
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        #: The first write that failed (the writer keeps going; its rows are dropped).
        self.error: str | None = None
        self._closed = False
        #: The CPUs the writer thread runs on (None: where it was started from's).
        self._cpus = cpus
        self._thread: threading.Thread | None = None
        if not synchronous:
            self._thread = threading.Thread(target=self._write_loop,
                                            name="prediction-log", daemon=True)
            self._thread.start()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a killed process
        db.executescript(SCHEMA)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('pid', ?)", (str(os.getpid()),))
        return db

    def record(self, batch: np.ndarray, predictions: Sequence[Any]) -> None:
        """Log this request if the sampler picks it (``predictions``: its Prediction
        objects). Never raises into the request path for a full queue or a failed write
        (:meth:`_flush`). In the background mode the request path only queues references
        (a served request's batch and predictions are not modified after): the writer
        thread encodes them."""
        if self._closed or not self.sample():
            return
        if self.synchronous:  # a failed write drops the row: the answer still goes out
            self._flush([self._row(time.time(), batch, predictions)])
            return
        # The queue's own size: a counter shared by the request threads and the writer
        # would need a lock on the request path.
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.put((time.time(), batch, predictions))

    def _row(self, ts: float, batch: np.ndarray, predictions: Sequence[Any]
             ) -> tuple[Any, ...]:
        return (ts, self.bundle, self.version, json.dumps(list(batch.shape)),
                np.ascontiguousarray(batch, dtype=np.float32).tobytes(),
                json.dumps([{"label": p.label, "probabilities": list(p.probabilities)}
                            for p in predictions]))

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO predictions (ts, bundle, model_version, input_shape, input, "
                "output) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _write_loop(self) -> None:
        if self._cpus:  # pid 0: this thread only
            os.sched_setaffinity(0, self._cpus)
        pending: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + FLUSH_S
        while True:
            try:
                row = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                row = ()
            if row is None:  # close()
                break
            if row:
                pending.append(self._row(*row))
            if pending and (len(pending) >= FLUSH_ROWS or time.monotonic() >= deadline):
                self._flush(pending)
                pending = []
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + FLUSH_S
        self._flush(pending)

    def _flush(self, rows: list[tuple[Any, ...]]) -> None:
        """Writes ``rows``. A write that fails (a full disk, a database removed under it)
        drops them, counted, and is said once: the background writer goes on (dead, it
        would leave every later row queued in memory), a synchronous one still answers."""
        if not rows:
            return
        try:
            self._insert(rows)
        except sqlite3.Error as exc:
            self.dropped += len(rows)
            if self.error is None:
                self.error = f"{type(exc).__name__}: {exc}"
                print(f"warning: prediction log {self.path}: a write failed ({self.error}); "
                      "its rows are dropped and counted", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Flush what waits and close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        with contextlib.suppress(sqlite3.Error):
            if self.dropped:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)",
                                 (str(self.dropped),))
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


# -- reading a log back ------------------------------------------------------------------
def databases(directory: Path | str) -> list[Path]:
    """The log's databases in ``directory`` (one per process that logged)."""
    return sorted(Path(directory).glob(LOG_GLOB))


def read_log(directory: Path | str) -> Iterator[LoggedRequest]:
    """Every logged request in ``directory``, database by database, in the order written."""
    for path in databases(directory):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for row in db.execute("SELECT id, ts, bundle, model_version, input_shape, input, "
                                  "output FROM predictions ORDER BY id"):
                yield _logged(path, row)
        finally:
            db.close()


def _logged(path: Path, row: tuple[Any, ...]) -> LoggedRequest:
    """One row read back; ValueError, naming the database and row, for one this module
    did not write (a shape that is not its input's, an answer without its label)."""
    try:
        shape = tuple(int(n) for n in json.loads(row[4]))
        answers = json.loads(row[6])
        return LoggedRequest(
            id=row[0], ts=row[1], bundle=row[2], model_version=row[3],
            input=np.frombuffer(row[5], dtype=np.float32).reshape(shape),
            output=[(int(a["label"]), tuple(a["probabilities"])) for a in answers])
    except (ValueError, TypeError, LookupError) as exc:
        raise ValueError(f"{path}: row {row[0]} is not a logged prediction "
                         f"({type(exc).__name__}: {exc})") from exc


def count_rows(directory: Path | str) -> int:
    """Requests logged in ``directory``, all databases together."""
    total = 0
    for path in databases(directory):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            total += db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        finally:
            db.close()
    return total


def read_inputs(directory: Path | str) -> tuple[str | None, np.ndarray | None]:
    """The bundle the log is of (the first row's; None when empty) and every logged
    example stacked: ``(N, *input_shape)``. Raises ValueError when the log mixes bundles
    or shapes."""
    bundle: str | None = None
    parts: list[np.ndarray] = []
    for logged in read_log(directory):
        if bundle is None:
            bundle = logged.bundle
        elif logged.bundle != bundle:
            raise ValueError(f"the log in {directory} mixes bundles ({bundle}, "
                             f"{logged.bundle}): check one bundle's log at a time")
        if parts and logged.input.shape[1:] != parts[0].shape[1:]:
            raise ValueError(f"the log in {directory} mixes input shapes")
        parts.append(logged.input)
    return bundle, (np.concatenate(parts) if parts else None)
