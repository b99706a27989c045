"""A suite's history read back (``deploybench history HDIR``): its entries in time order,
the trend of each cell's figures over them, and what changed between the last two.

Which entries belong together: those of the latest entry's machine class and suite name
(a history compares like with like: CI runners are new machines of one kind each time);
the others are left out, each with why. Entries whose suite file changed (another
``suite_hash``) are kept: their cells are matched by id, and a note says so.

The figures are the decision's (:func:`reports.decision.figures`) over each entry's copy
of a cell's run.json; the changes are ``deploybench compare``'s (:mod:`reports.compare`),
the previous entry's run as A and the latest's as B.
"""

from __future__ import annotations

import gzip
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reports import compare, decision
from reports.loads import at_load, common_load, spread
from reports.schema import RUN_FILE, ResultFileError, RunDoc, parse_run
from reports.suiteschema import (
    ENTRY_FILE,
    MANIFEST_FILE,
    HistoryCell,
    HistoryEntry,
    SuiteError,
    load_entry,
)

#: The trend charts' metrics: (key, what it is, unit).
TREND_METRICS = (
    ("capacity", "capacity within the objective", "req/s"),
    ("p99", "p99 at the common load", "ms"),
    ("peak_rps", "peak throughput", "req/s"),
)


@dataclass(frozen=True)
class Entry:
    """One entry of a history folder: its folder's name (the entry id) and its record."""

    id: str
    dir: Path
    record: HistoryEntry

    @property
    def label(self) -> str:
        """How the trend charts' x axis names it: version and date."""
        return f"{self.record['deploybench']}\n{self.record['time'][:10]}"

    def cell(self, cell_id: str) -> HistoryCell | None:
        return next((c for c in self.record["cells"] if c["id"] == cell_id), None)


@dataclass
class History:
    dir: Path
    #: The entries compared, oldest first.
    entries: list[Entry]
    #: (entry id, why) for each entry left out.
    left_out: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Every entry of the folder, kept or not, oldest first.
    every: list[Entry] = field(default_factory=list)
    _runs: dict[tuple[str, str], RunDoc] = field(default_factory=dict, repr=False)

    @property
    def latest(self) -> Entry:
        return self.entries[-1]

    @property
    def previous(self) -> Entry | None:
        return self.entries[-2] if len(self.entries) >= 2 else None

    def cell_ids(self) -> list[str]:
        """Every cell id of the kept entries, in the order they first appear."""
        return list(dict.fromkeys(c["id"] for e in self.entries for c in e.record["cells"]))

    def run(self, entry: Entry, cell_id: str) -> RunDoc | None:
        """The entry's copy of a cell's run.json, upgraded (None: not complete there)."""
        cell = entry.cell(cell_id)
        if cell is None:
            return None
        key = (entry.id, cell_id)
        if key not in self._runs:
            self._runs[key] = read_run_copy(entry.dir / cell["run"])
        return self._runs[key]


def read_run_copy(path: Path) -> RunDoc:
    """A gzip'd copy of a run.json (HDIR/ENTRY/runs/CELL.json.gz), upgraded."""
    try:
        return parse_run(gzip.decompress(path.read_bytes()), str(path))
    except FileNotFoundError:
        raise SuiteError(f"{path} is missing: the history entry {path.parent.parent.name} "
                         "is damaged; remove that folder") from None
    except (OSError, EOFError) as exc:
        raise SuiteError(f"{path} cannot be read ({exc}): remove the entry "
                         f"{path.parent.parent.name}") from None
    except ResultFileError as exc:
        raise SuiteError(f"{exc}: remove the entry {path.parent.parent.name}") from None


def _entry_dirs(folder: Path) -> list[Path]:
    # Dot-folders are append_entry's temporary ones, half written or being replaced.
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / ENTRY_FILE).exists())


def load_history(hdir: Path) -> History:
    """The entries of ``hdir`` that belong together, oldest first; SuiteError when it is
    not a history folder (saying which folder to give)."""
    if not hdir.is_dir():
        raise SuiteError(f"no history folder {hdir}: give the folder `deploybench suite` "
                         "adds its entries to (default results/history/SUITE_NAME)")
    if (hdir / MANIFEST_FILE).exists():
        raise SuiteError(f"{hdir} is a suite folder, not a history: give the history folder "
                         "the suite added its entry to (default results/history/SUITE_NAME)")
    if (hdir / RUN_FILE).exists():
        raise SuiteError(f"{hdir} is a run folder, not a history: compare two runs with "
                         "`deploybench compare A B`, or give a suite's history folder "
                         "(default results/history/SUITE_NAME)")
    dirs = _entry_dirs(hdir)
    if not dirs:
        nested = sorted(p.name for p in hdir.iterdir() if p.is_dir() and _entry_dirs(p))
        if nested:
            raise SuiteError(f"{hdir} holds the histories of several suites ("
                             f"{', '.join(nested)}): give one of them, e.g. "
                             f"{hdir / nested[0]}")
        raise SuiteError(f"no history entry in {hdir} (no ENTRY/{ENTRY_FILE}): give a folder "
                         "that `deploybench suite` added entries to (default "
                         "results/history/SUITE_NAME)")
    every = sorted((Entry(d.name, d, load_entry(d)) for d in dirs),
                   key=lambda e: (e.record["time"], e.id))
    latest = every[-1].record
    history = History(hdir, [], every=every)
    for entry in every:
        rec = entry.record
        if rec["suite"] != latest["suite"]:
            history.left_out.append((entry.id, f"another suite ({rec['suite']}, not "
                                               f"{latest['suite']})"))
        elif rec["machine"]["label"] != latest["machine"]["label"]:
            history.left_out.append((entry.id, f"another machine class "
                                               f"({rec['machine']['label']})"))
        else:
            history.entries.append(entry)
    changed = [e.id for e in history.entries if e.record["suite_hash"] != latest["suite_hash"]]
    if changed:
        history.notes.append(
            f"the suite file changed since {', '.join(changed)} (another suite hash): cells "
            "are matched by id, and a cell not in an entry has no point there")
    return history


# -- the trend ---------------------------------------------------------------------------

#: cell id -> metric -> deployment -> one value per kept entry (None: not measured there).
Trend = dict[str, dict[str, dict[str, list[float | None]]]]


def _values(run: RunDoc, load: tuple[str, float] | None
            ) -> dict[str, dict[str, float | None]]:
    """metric -> deployment -> the run's figure; p99 at ``load``, one for every entry."""
    out: dict[str, dict[str, float | None]] = {m: {} for m, _, _ in TREND_METRICS}
    for f in decision.figures(run):
        out["capacity"][f.name] = f.capacity.median if f.capacity else None
        out["peak_rps"][f.name] = f.peak_rps
    for t in run["targets"]:
        p99 = spread(at_load(t, load), "p99")
        out["p99"][t["name"]] = p99.median if p99 else None
    return out


def trend_load(history: History, cell_id: str) -> tuple[str, float] | None:
    """The load a cell's p99 trend is read at in every entry: the common load of the
    latest entry that has the cell. Each entry's own common load would move with a failed
    deployment or a shorter sweep, and the line would join p99s at different loads."""
    for entry in reversed(history.entries):
        run = history.run(entry, cell_id)
        if run is not None:
            return common_load(run)
    return None


def trend(history: History) -> Trend:
    out: Trend = {}
    n = len(history.entries)
    for cell_id in history.cell_ids():
        series: dict[str, dict[str, list[float | None]]] = {m: {} for m, _, _ in TREND_METRICS}
        load = trend_load(history, cell_id)
        for i, entry in enumerate(history.entries):
            run = history.run(entry, cell_id)
            if run is None:
                continue
            for metric, by_target in _values(run, load).items():
                for name, value in by_target.items():
                    series[metric].setdefault(name, [None] * n)[i] = value
        out[cell_id] = series
    return out


# -- the last two entries ----------------------------------------------------------------

@dataclass
class CellChange:
    """One cell in the previous and the latest entry, compared."""

    cell: str
    comparison: compare.Comparison
    #: What changed besides the code under test (the bundle's hash, the run's setup).
    notes: list[str]

    @property
    def worse(self) -> list[compare.Change]:
        """Every change in the bad direction not shown to be within noise."""
        return [c for c in self.comparison.changes if c.worse and c.significant is not False]

    def verdicts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.comparison.changes:
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
        return counts


@dataclass
class Latest:
    """The latest entry against the one before it."""

    previous: Entry
    latest: Entry
    cells: list[CellChange]
    only_in_previous: list[str]
    only_in_latest: list[str]
    notes: list[str]

    @property
    def broken(self) -> list[str]:
        """Cells complete in the previous entry that the latest ran but did not complete
        (they fail ``--fail-on``)."""
        return [i for i in self.only_in_previous if i in self.latest.record["left_out"]]

    @property
    def gone(self) -> list[str]:
        """Cells of the previous entry that the latest suite no longer has."""
        return [i for i in self.only_in_previous if i not in self.broken]


#: compare's warnings a history says in its own words (a new version is what it tracks).
_OWN_WARNINGS = ("deploybench differs", "git_commit differs", "the bundle's checksum differs")


def latest_changes(history: History) -> Latest | None:
    """The last two kept entries compared cell by cell; None with fewer than two."""
    prev, last = history.previous, history.latest
    if prev is None:
        return None
    notes = []
    order = [e.id for e in history.every]
    between = history.every[order.index(prev.id) + 1:order.index(last.id)]
    skipped = [e.id for e in between
               if e.record["machine"]["label"] != last.record["machine"]["label"]]
    if skipped:
        notes.append(f"the machine class changed: {', '.join(skipped)} ran on another one "
                     f"and is left out, so the latest is compared with {prev.id}")
    p, q = prev.record, last.record
    if (p["deploybench"], p["git_commit"]) != (q["deploybench"], q["git_commit"]):
        notes.append(f"deploybench {p['deploybench']} ({_short(p['git_commit'])}) -> "
                     f"{q['deploybench']} ({_short(q['git_commit'])})")
    cells, changed_models = [], []
    ids_prev = [c["id"] for c in p["cells"]]
    ids_last = [c["id"] for c in q["cells"]]
    for cell_id in ids_last:
        a, b = history.run(prev, cell_id), history.run(last, cell_id)
        if a is None or b is None:
            continue
        ca, cb = prev.cell(cell_id), last.cell(cell_id)
        assert ca is not None
        assert cb is not None
        comparison = compare.compare(a, b)
        cell_notes = [w for w in comparison.warnings if not w.startswith(_OWN_WARNINGS)]
        missing = [side for side, c in (("the previous", ca), ("the latest", cb))
                   if c["bundle_sha256"] is None]
        if missing:
            cell_notes.insert(0, f"the sha256 of the bundle {cb['bundle']} is not "
                                 f"recorded in {' or '.join(missing)} entry: whether the "
                                 "model changed is not known")
        elif ca["bundle_sha256"] != cb["bundle_sha256"]:
            cell_notes.insert(0, f"the bundle {cb['bundle']} changed (sha256 "
                                 f"{_short(ca['bundle_sha256'])} -> "
                                 f"{_short(cb['bundle_sha256'])}): the model itself is not "
                                 "the same")
            changed_models.append(cell_id)
        cells.append(CellChange(cell_id, comparison, cell_notes))
    shift = common_shift(cells, changed_models)
    if shift:
        notes.append(shift)
    return Latest(prev, last, cells, [i for i in ids_prev if i not in ids_last],
                  [i for i in ids_last if i not in ids_prev], notes)


#: A deployment's median p50 change past which it counts as moved (the common shift).
SHIFT_FLOOR = 0.02


def common_shift(cells: Sequence[CellChange], changed_models: Sequence[str] = ()
                 ) -> str | None:
    """A sentence when every deployment of every cell moved the same way: each one's
    median p50 change over its loads beyond ``SHIFT_FLOOR``, all of one sign. Every
    deployment at once, the in-process model among them, is what a slower or faster
    machine looks like (a busy neighbour, another clock), as much as a change in code they
    all share; one cell's own figures cannot tell the two apart, a rerun of the previous
    commit can; where the bundle changed (``changed_models``, cell ids), the sentence puts
    that first. None when fewer than two deployments were compared or any did not move."""
    medians = []
    for cell in cells:
        by_target: dict[str, list[float]] = {}
        for c in cell.comparison.changes:
            if c.metric == "p50" and c.delta is not None:
                by_target.setdefault(c.target, []).append(c.delta)
        medians += [(statistics.median(d), f"{t} in {cell.cell}") for t, d in by_target.items()]
    if len(medians) < 2 or not (all(m > SHIFT_FLOOR for m, _ in medians)
                                or all(m < -SHIFT_FLOOR for m, _ in medians)):
        return None
    slower = medians[0][0] > 0
    low, high = min(medians), max(medians)
    model = (", the in-process model (no serving code) among them"
             if any(name.startswith("inprocess in ") for _, name in medians) else "")
    way, machine = ("slower", "a slower") if slower else ("faster", "a faster")
    head = (f"every deployment in every cell is {way} (median p50 change over its loads "
            f"from {low[0]:+.1%}, {low[1]}, to {high[0]:+.1%}, {high[1]}){model}")
    if changed_models:
        return (f"{head}: the model changed ({', '.join(changed_models)}) and every "
                f"deployment serves it; {machine} machine (a busy neighbour, another "
                "clock) would move them all as well")
    return (f"{head}: a shift this uniform is what {machine} machine looks like (a busy "
            "neighbour, another clock) as much as a change in code they all share. Run "
            "the previous commit again on this machine to tell them apart before acting "
            "on it")


def gate(latest: Latest, checks: Sequence[compare.FailOn]) -> list[str]:
    """``--fail-on`` over every matched cell: one line per failure, naming the cell; and,
    as compare fails a target that failed in B, every cell complete in the previous entry
    that the latest ran but did not complete (a cell taken out of the suite file does not
    fail)."""
    if not checks:
        return []
    return [f"{cell.cell}: {line}" for cell in latest.cells
            for line in compare.gate(cell.comparison, checks)] + [
        f"{i}: complete in {latest.previous.id}, not complete in {latest.latest.id} "
        "(failed or partial: see that suite's index)" for i in latest.broken]


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "not recorded"
