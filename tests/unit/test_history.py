"""A suite's history: the entry a suite folder adds (append_entry), the history read back
(which entries belong together), its trend and the latest entry against the one before,
and `deploybench history`'s gate; over suite folders written by hand around simulated
runs (the fake targets' figures are deterministic)."""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.commands import EXIT_REGRESSION
from harness.results import write_run
from harness.suites.history import append_entry
from reports import decision, history
from reports.loads import common_load
from reports.schema import RunDoc
from reports.suiteschema import COMPLETE, FAILED, SuiteError, load_entry
from tests.suitefolders import write_manifest
from tests.unit import runs


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> RunDoc:
    """Two simulated deployments ("fast", "slow"), their kept windows a few percent apart
    so every figure has a spread, as on a real machine."""
    return runs.spread_fast_slow(tmp_path_factory.mktemp("run"))


def slower(run: RunDoc, target: str, factor: float) -> RunDoc:
    """A copy with ``target``'s latencies (and its windows') times ``factor``."""
    out = copy.deepcopy(run)
    for t in out["targets"]:
        if t["name"] != target:
            continue
        for s in t["stages"]:
            assert s["latency_ms"] is not None
            for key in ("p50", "p99"):
                s["latency_ms"][key] *= factor  # type: ignore[literal-required]
            for w in s["windows"]:
                for key in ("p50_ms", "p99_ms"):
                    w[key] *= factor  # type: ignore[literal-required]
    return out


def suite(folder: Path, cells: dict[str, tuple[str, RunDoc | None]], **manifest: object
          ) -> Path:
    """A suite folder: each cell's run.json (when given a run) and the manifest."""
    for cell_id, (_, run) in cells.items():
        if run is not None:
            (folder / "cells" / cell_id).mkdir(parents=True)
            write_run(folder / "cells" / cell_id, run)
    write_manifest(folder, {k: status for k, (status, _) in cells.items()},
                   **manifest)  # type: ignore[arg-type]
    return folder


def entries(hdir: Path) -> list[Path]:
    return sorted(p for p in hdir.iterdir() if p.is_dir() and (p / "entry.json").exists())


# -- append_entry ------------------------------------------------------------------------

def test_an_entry_keeps_the_complete_cells_and_names_the_others(
        base_run: RunDoc, tmp_path: Path) -> None:
    sdir = suite(tmp_path / "s1", {"digits-smoke": (COMPLETE, base_run),
                                   "vision-smoke": (FAILED, None)})
    hdir = tmp_path / "history"
    entry_dir = append_entry(sdir, hdir)
    assert entry_dir is not None
    assert entries(hdir) == [entry_dir]
    assert re.fullmatch(r"20261201T000000Z-0\.1\.0", entry_dir.name)
    entry = load_entry(entry_dir)
    assert entry["suite"] == "nightly"
    assert entry["time"] == "2026-12-01T00:00:00+00:00"
    assert entry["source"] == str(sdir.resolve())
    assert entry["left_out"] == ["vision-smoke"]
    assert [c["id"] for c in entry["cells"]] == ["digits-smoke"]
    cell = entry["cells"][0]
    assert cell["bundle_sha256"] == base_run["bundle"].get("sha256")
    assert cell["targets"] == ["fast", "slow"]
    copy_bytes = gzip.decompress((entry_dir / cell["run"]).read_bytes())
    assert copy_bytes == (sdir / "cells" / "digits-smoke" / "run.json").read_bytes()
    # Nothing half written is left beside it.
    assert [p.name for p in hdir.iterdir()] == [entry_dir.name]


def test_a_resumed_suite_replaces_its_entry(base_run: RunDoc, tmp_path: Path) -> None:
    sdir = suite(tmp_path / "s1", {"a": (COMPLETE, base_run), "b": (FAILED, None)},
                 finished_at=None)
    hdir = tmp_path / "history"
    first = append_entry(sdir, hdir)
    assert first is not None
    # Without finished_at the time is the last cell's end: its start plus its wall time.
    started = dt.datetime.fromisoformat(base_run["metadata"]["started_at"])
    end = started.astimezone(dt.UTC) + dt.timedelta(seconds=10.0)
    assert load_entry(first)["time"] == end.isoformat(timespec="seconds")
    (sdir / "cells" / "b").mkdir(parents=True)
    write_run(sdir / "cells" / "b", base_run)
    write_manifest(sdir, {"a": COMPLETE, "b": COMPLETE}, finished_at="2026-12-02T08:00:00Z")
    second = append_entry(sdir, hdir)
    assert second is not None
    assert entries(hdir) == [second]
    assert second.name.startswith("20261202T080000Z-")
    entry = load_entry(second)
    assert [c["id"] for c in entry["cells"]] == ["a", "b"]
    assert entry["left_out"] == []


def test_a_failed_replacement_puts_the_old_entry_back(base_run: RunDoc, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sdir = suite(tmp_path / "s1", {"a": (COMPLETE, base_run)}, finished_at=None)
    hdir = tmp_path / "history"
    first = append_entry(sdir, hdir)
    assert first is not None
    before = (first / "entry.json").read_text()
    write_manifest(sdir, {"a": COMPLETE}, finished_at="2026-12-02T08:00:00Z")
    real = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self.name.startswith(".new-"):
            raise OSError("disk full (made up)")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="made up"):
        append_entry(sdir, hdir)
    monkeypatch.undo()
    assert [p.name for p in hdir.iterdir()] == [first.name]
    assert (first / "entry.json").read_text() == before


def test_a_new_suite_run_in_a_reused_folder_adds_an_entry(base_run: RunDoc,
                                                           tmp_path: Path) -> None:
    hdir = tmp_path / "history"
    sdir = suite(tmp_path / "nightly", {"a": (COMPLETE, base_run)})
    first = append_entry(sdir, hdir)
    manifest = json.loads((sdir / "suite.json").read_text())
    manifest.update(started_at="2026-12-01T23:00:00+00:00",
                    finished_at="2026-12-02T00:00:00+00:00")
    (sdir / "suite.json").write_text(json.dumps(manifest))
    second = append_entry(sdir, hdir)
    assert first is not None and second is not None  # noqa: PT018
    assert entries(hdir) == [first, second]


def test_no_complete_cell_writes_nothing(tmp_path: Path) -> None:
    sdir = suite(tmp_path / "s1", {"a": (FAILED, None)})
    assert append_entry(sdir, tmp_path / "history") is None
    assert not (tmp_path / "history").exists()


def test_two_suite_folders_of_the_same_second_get_two_entries(
        base_run: RunDoc, tmp_path: Path) -> None:
    hdir = tmp_path / "history"
    one = append_entry(suite(tmp_path / "s1", {"a": (COMPLETE, base_run)}), hdir)
    two = append_entry(suite(tmp_path / "s2", {"a": (COMPLETE, base_run)}), hdir)
    assert one is not None and two is not None  # noqa: PT018
    assert two.name == one.name + "-2"
    assert len(entries(hdir)) == 2


# -- reading a history -------------------------------------------------------------------

def test_the_loader_says_which_folder_to_give(base_run: RunDoc, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SuiteError, match="no history folder"):
        history.load_history(tmp_path / "missing")
    sdir = suite(tmp_path / "s1", {"a": (COMPLETE, base_run)})
    with pytest.raises(SuiteError, match="is a suite folder, not a history"):
        history.load_history(sdir)
    root = tmp_path / "histories"
    for name in ("nightly", "weekly"):
        append_entry(sdir, root / name)
    with pytest.raises(SuiteError, match=r"several suites \(nightly, weekly\).*nightly"):
        history.load_history(root)
    with pytest.raises(SuiteError, match="is a run folder, not a history"):
        history.load_history(sdir / "cells" / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SuiteError, match="no history entry in"):
        history.load_history(tmp_path / "empty")
    assert main(["history", str(sdir)]) == 1
    assert "error: " in capsys.readouterr().err


def test_entries_of_another_machine_class_are_left_out(base_run: RunDoc,
                                                       tmp_path: Path) -> None:
    hdir = tmp_path / "history"
    other = {"cpu_model": "Other CPU", "cpu_count": 64, "memory_gb": 256.0,
             "label": "Other CPU, 64 CPUs, 256 GiB"}
    for i, day in enumerate(("01", "02", "03")):
        append_entry(suite(tmp_path / f"s{i}", {"a": (COMPLETE, base_run)},
                           finished_at=f"2026-12-{day}T00:00:00+00:00",
                           machine=other if day == "02" else None), hdir)
    append_entry(suite(tmp_path / "weekly", {"a": (COMPLETE, base_run)}, name="weekly",
                       finished_at="2026-11-30T00:00:00+00:00"), hdir)
    hist = history.load_history(hdir)
    assert [e.id[:8] for e in hist.entries] == ["20261201", "20261203"]
    assert [(i[:8], why) for i, why in hist.left_out] == [
        ("20261130", "another suite (weekly, not nightly)"),
        ("20261202", "another machine class (Other CPU, 64 CPUs, 256 GiB)")]
    latest = history.latest_changes(hist)
    assert latest is not None
    assert any("machine class changed" in n for n in latest.notes)


def test_a_changed_suite_file_is_kept_with_a_note(base_run: RunDoc, tmp_path: Path) -> None:
    hdir = tmp_path / "history"
    append_entry(suite(tmp_path / "s1", {"a": (COMPLETE, base_run)}, suite_hash="1" * 64,
                       finished_at="2026-12-01T00:00:00Z"), hdir)
    append_entry(suite(tmp_path / "s2", {"a": (COMPLETE, base_run)}, suite_hash="2" * 64,
                       finished_at="2026-12-02T00:00:00Z"), hdir)
    hist = history.load_history(hdir)
    assert len(hist.entries) == 2
    assert any("suite file changed" in n for n in hist.notes)


def test_the_trend_is_each_runs_figures(base_run: RunDoc, tmp_path: Path) -> None:
    hdir = tmp_path / "history"
    docs = [base_run, slower(base_run, "fast", 1.5)]
    for i, doc in enumerate(docs):
        append_entry(suite(tmp_path / f"s{i}", {"digits-smoke": (COMPLETE, doc)},
                           finished_at=f"2026-12-0{i + 1}T00:00:00Z"), hdir)
    hist = history.load_history(hdir)
    series = history.trend(hist)["digits-smoke"]
    for i, doc in enumerate(docs):
        for f in decision.figures(doc):
            assert f.common_p99 is not None
            assert series["p99"][f.name][i] == f.common_p99.median
            assert series["peak_rps"][f.name][i] == f.peak_rps
            assert series["capacity"][f.name][i] == (f.capacity.median if f.capacity
                                                     else None)
    fast = series["p99"]["fast"]
    assert fast[0] is not None and fast[1] is not None  # noqa: PT018
    assert fast[1] == pytest.approx(fast[0] * 1.5)


# -- deploybench history -----------------------------------------------------------------

def two_entries(base_run: RunDoc, tmp_path: Path, second: RunDoc) -> Path:
    hdir = tmp_path / "history"
    for i, given in enumerate((base_run, second)):
        doc = copy.deepcopy(given)
        doc["metadata"]["git_commit"] = str(i) * 40  # the code that measured it
        append_entry(suite(tmp_path / f"s{i}", {"digits-smoke": (COMPLETE, doc)},
                           finished_at=f"2026-12-0{i + 1}T00:00:00Z",
                           commit=str(i) * 40), hdir)
    return hdir


def test_a_slower_latest_entry_is_flagged_and_fails_the_gate(
        base_run: RunDoc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hdir = two_entries(base_run, tmp_path, slower(base_run, "fast", 1.5))
    assert main(["history", str(hdir), "--fail-on", "p99:+10%"]) == EXIT_REGRESSION == 3
    out = capsys.readouterr().out
    worse = [ln for ln in out.splitlines() if "worse:" in ln]
    assert worse
    assert all(" fast at " in ln for ln in worse)
    assert any(" p99 " in ln and "worse beyond spread (untested)" in ln for ln in worse)
    assert "FAIL (p99:+10%)" in out
    assert "digits-smoke: fast at" in out.split("FAIL")[1]
    md = (hdir / "history.md").read_text()
    assert "worse beyond spread (untested)" in md
    assert "**SIMULATED**: digits-smoke ran the test target" in md
    # The figures table: the entry before against the latest (p99 at the common load).
    assert "| fast | 2,000 req/s -> 2,000 req/s | 1.00 ms -> 1.50 ms |" in md
    assert "deploybench 0.1.0 (000000000000) -> 0.1.0 (111111111111)" in md
    charts = sorted(p.name for p in (hdir / "charts").iterdir())
    assert charts == ["trend-digits-smoke-capacity.png", "trend-digits-smoke-p99.png",
                      "trend-digits-smoke-peak_rps.png"]
    page = (hdir / "history.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'src="charts' not in page


def test_an_unchanged_latest_entry_passes(base_run: RunDoc, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    hdir = two_entries(base_run, tmp_path, base_run)
    out_dir = tmp_path / "report"
    assert main(["history", str(hdir), "--out", str(out_dir), "--fail-on", "p99:+10%",
                 "--fail-on", "rps:-5%"]) == 0
    out = capsys.readouterr().out
    assert "worse:" not in out
    assert "PASS (p99:+10%, rps:-5%)" in out
    assert (out_dir / "history.md").exists()
    assert not (hdir / "history.md").exists()


def test_a_cell_that_no_longer_completes_fails_the_gate(
        base_run: RunDoc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hdir = tmp_path / "history"
    first = suite(tmp_path / "s1", {"a": (COMPLETE, base_run), "b": (COMPLETE, base_run)},
                  finished_at="2026-12-01T00:00:00Z")
    append_entry(first, hdir)
    second = suite(tmp_path / "s2", {"a": (COMPLETE, base_run), "b": (FAILED, None)},
                   finished_at="2026-12-02T00:00:00Z")
    append_entry(second, hdir)
    assert main(["history", str(hdir)]) == 0  # without --fail-on: reported, no gate
    assert main(["history", str(hdir), "--fail-on", "p99:+10%"]) == EXIT_REGRESSION
    out = capsys.readouterr().out.split("FAIL (p99:+10%):")[1]
    assert "  b: complete in 20261201T000000Z-0.1.0, not complete in " \
           "20261202T000000Z-0.1.0 (failed or partial: see that suite's index)" in out
    assert "  a:" not in out
    assert "NOT complete in the latest (failed or partial; `--fail-on` fails on it): b" in \
        (hdir / "history.md").read_text()


def test_a_changed_bundle_is_noted(base_run: RunDoc, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = copy.deepcopy(base_run)
    other["bundle"]["sha256"] = "f" * 64
    hdir = two_entries(base_run, tmp_path, other)
    assert main(["history", str(hdir)]) == 0
    out = capsys.readouterr().out
    assert "the bundle digits changed" in out
    assert "ffffffffffff" in out


def test_a_changed_bundle_comes_first_in_a_common_shift(
        base_run: RunDoc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = slower(slower(base_run, "fast", 1.3), "slow", 1.3)
    other["bundle"]["sha256"] = "f" * 64
    assert main(["history", str(two_entries(base_run, tmp_path, other))]) == 0
    out = capsys.readouterr().out
    assert "every deployment in every cell is slower" in out
    assert "the model changed (digits-smoke) and every deployment serves it" in out
    assert "Run the previous commit again" not in out


def test_one_entry_compares_nothing(base_run: RunDoc, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    hdir = tmp_path / "history"
    append_entry(suite(tmp_path / "s1", {"a": (COMPLETE, base_run)}), hdir)
    assert main(["history", str(hdir), "--fail-on", "p99:+10%"]) == 0
    out = capsys.readouterr().out
    assert "nothing to compare yet" in out
    assert "nothing compared" in out
    assert json.loads((entries(hdir)[0] / "entry.json").read_text())["cells"]


def test_a_damaged_entry_is_named(base_run: RunDoc, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    hdir = two_entries(base_run, tmp_path, base_run)
    damaged = entries(hdir)[0]
    (damaged / "runs" / "digits-smoke.json.gz").write_bytes(b"not gzip")
    assert main(["history", str(hdir)]) == 1
    err = capsys.readouterr().err
    assert f"remove the entry {damaged.name}" in err


@pytest.mark.parametrize(("content", "says"), [(b"[1]", "not a JSON object"),
                                               (b"{", "is not valid JSON")])
def test_a_copy_that_is_no_run_is_named(base_run: RunDoc, tmp_path: Path, content: bytes,
                                        says: str, capsys: pytest.CaptureFixture[str]) -> None:
    hdir = two_entries(base_run, tmp_path, base_run)
    damaged = entries(hdir)[0]
    (damaged / "runs" / "digits-smoke.json.gz").write_bytes(gzip.compress(content))
    assert main(["history", str(hdir)]) == 1
    err = capsys.readouterr().err
    assert says in err
    assert "digits-smoke.json.gz" in err
    assert f"remove the entry {damaged.name}" in err


def test_every_deployment_slower_at_once_names_the_machine_as_a_cause(
        base_run: RunDoc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    both = slower(slower(base_run, "fast", 1.3), "slow", 1.1)
    hdir = two_entries(base_run, tmp_path, both)
    assert main(["history", str(hdir)]) == 0
    out = capsys.readouterr().out
    assert "every deployment in every cell is slower (median p50 change over its loads " \
           "from +10.0%, slow in digits-smoke, to +30.0%, fast in digits-smoke)" in out
    assert "as much as a change in code they all share" in out
    assert "every deployment in every cell is slower" in (hdir / "history.md").read_text()


@pytest.mark.parametrize("factor", [1.5, 1.01])
def test_one_deployment_slower_is_no_common_shift(base_run: RunDoc, tmp_path: Path,
                                                  factor: float) -> None:
    # Only "fast" moved; or both, but one within the floor: nothing common to say.
    second = slower(base_run, "fast", 1.5) if factor == 1.5 else slower(
        slower(base_run, "fast", 1.5), "slow", factor)
    latest = history.latest_changes(history.load_history(two_entries(base_run, tmp_path,
                                                                     second)))
    assert latest is not None
    assert history.common_shift(latest.cells) is None


def test_a_sha256_missing_in_one_entry_is_not_a_changed_model(
        base_run: RunDoc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = copy.deepcopy(base_run)
    before["bundle"]["sha256"] = None
    hdir = tmp_path / "history"
    for i, doc in enumerate((before, base_run)):
        append_entry(suite(tmp_path / f"s{i}", {"digits-smoke": (COMPLETE, doc)},
                           finished_at=f"2026-12-0{i + 1}T00:00:00Z"), hdir)
    assert main(["history", str(hdir)]) == 0
    out = capsys.readouterr().out
    assert "the sha256 of the bundle digits is not recorded in the previous entry: " \
           "whether the model changed is not known" in out
    assert "the bundle digits changed" not in out


def test_an_entry_records_the_commit_its_cells_ran_on(
        base_run: RunDoc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A suite resumed after a pull: the manifest has the last invocation's commit.
    a, b = copy.deepcopy(base_run), copy.deepcopy(base_run)
    a["metadata"]["git_commit"], b["metadata"]["git_commit"] = "a" * 40, "b" * 40
    one = append_entry(suite(tmp_path / "s1", {"x": (COMPLETE, a)}, commit="c" * 40),
                       tmp_path / "h1")
    assert one is not None
    assert load_entry(one)["git_commit"] == "a" * 40
    two = append_entry(suite(tmp_path / "s2", {"x": (COMPLETE, a), "y": (COMPLETE, b)},
                             commit="c" * 40), tmp_path / "h2")
    assert two is not None
    assert load_entry(two)["git_commit"] is None
    assert "ran on 2 versions or commits (aaaaaaaaaaaa, bbbbbbbbbbbb)" in \
        capsys.readouterr().err


def test_the_p99_trend_is_read_at_one_load_in_every_entry(base_run: RunDoc,
                                                          tmp_path: Path) -> None:
    # The previous entry's "slow" ran 4 users only: that entry's own common load is 4
    # users, the latest's 1 user. Every entry's p99 is read at the latest's.
    previous = copy.deepcopy(base_run)
    slow = next(t for t in previous["targets"] if t["name"] == "slow")
    slow["stages"] = [s for s in slow["stages"] if s["concurrency"] == 4]
    assert common_load(previous) == ("closed", 4.0)
    assert common_load(base_run) == ("closed", 1.0)
    hdir = tmp_path / "h"
    for i, doc in enumerate((previous, base_run)):
        append_entry(suite(tmp_path / f"t{i}", {"digits-smoke": (COMPLETE, doc)},
                           finished_at=f"2026-12-0{i + 1}T00:00:00Z"), hdir)
    hist = history.load_history(hdir)
    assert history.trend_load(hist, "digits-smoke") == ("closed", 1.0)
    p99 = history.trend(hist)["digits-smoke"]["p99"]
    fast = next(t for t in base_run["targets"] if t["name"] == "fast")
    at_one = next(s for s in fast["stages"] if s["concurrency"] == 1)["latency_ms"]
    assert at_one is not None
    assert p99["fast"] == [at_one["p99"], at_one["p99"]]
    assert p99["slow"][0] is None  # it ran no 1-user stage in the previous entry
    assert main(["history", str(hdir)]) == 0
    assert "p99 at 1 concurrent user in every entry" in (hdir / "history.md").read_text()
