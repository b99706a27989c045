"""The prediction log's store: exact sampling, rows that round-trip, nothing lost."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from targets import predlog
from targets.bundles.protocol import Prediction
from targets.predlog import PredictionLog, Sampler, count_rows, read_inputs, read_log


def _answer(i: int) -> list[Prediction]:
    return [Prediction(i % 10, tuple(float(j == i % 10) for j in range(10)))]


@pytest.mark.parametrize(("rate", "n", "logged"), [(1.0, 1000, 1000), (0.1, 1000, 100),
                                                    (0.25, 10, 2), (0.0, 50, 0)])
def test_the_sampler_logs_exactly_the_rate(rate: float, n: int, logged: int) -> None:
    sample = Sampler(rate)
    assert sum(sample() for _ in range(n)) == logged


def test_background_rows_round_trip_after_close(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, 1.0, "digits", "digits@abc")
    batches = [np.full((1, 64), i, np.float32) for i in range(300)]
    for i, batch in enumerate(batches):
        log.record(batch, _answer(i))
    log.close()
    rows = list(read_log(tmp_path))
    assert len(rows) == 300 == count_rows(tmp_path)
    for i, row in enumerate(rows):
        assert row.bundle == "digits"
        assert row.model_version == "digits@abc"
        np.testing.assert_array_equal(row.input, batches[i])
        assert row.output == [(i % 10, _answer(i)[0].probabilities)]
    bundle, inputs = read_inputs(tmp_path)
    assert bundle == "digits"
    assert inputs is not None
    assert inputs.shape == (300, 64)


def test_a_synchronous_row_is_committed_before_record_returns(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, 1.0, "digits", "digits", synchronous=True)
    log.record(np.zeros((2, 64), np.float32), _answer(1) + _answer(2))
    assert count_rows(tmp_path) == 1  # another connection sees it: committed, not closed
    log.close()


def _log_and_die(directory: str) -> None:
    log = PredictionLog(directory, 1.0, "digits", "digits", synchronous=True)
    for i in range(5):
        log.record(np.full((1, 64), i, np.float32), _answer(i))
    os._exit(1)  # no close(), as a killed worker


def test_a_killed_writer_keeps_what_it_committed(tmp_path: Path) -> None:
    proc = multiprocessing.get_context("fork").Process(target=_log_and_die,
                                                       args=(str(tmp_path),))
    proc.start()
    proc.join(30)
    assert count_rows(tmp_path) == 5


def test_a_full_queue_drops_and_counts_rather_than_block(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(predlog, "MAX_QUEUED", 0)
    log = PredictionLog(tmp_path, 1.0, "digits", "digits")
    log.record(np.zeros((1, 64), np.float32), _answer(0))
    assert log.dropped == 1
    log.close()
    assert count_rows(tmp_path) == 0


def test_a_log_of_two_bundles_is_refused(tmp_path: Path) -> None:
    for name, width in (("digits", 64), ("other", 64)):
        log = PredictionLog(tmp_path, 1.0, name, name, synchronous=True)
        log.record(np.zeros((1, width), np.float32), _answer(0))
        log.close()
    with pytest.raises(ValueError, match="mixes bundles"):
        read_inputs(tmp_path)


def test_model_version_names_the_weights_when_known() -> None:
    assert predlog.model_version("digits", {"sha256": "0123456789abcdef"}) == \
        "digits@0123456789ab"
    assert predlog.model_version("vision", {"sha256": None}) == "vision"


@pytest.mark.parametrize("synchronous", [False, True])
def test_a_failed_write_drops_its_rows_and_the_log_goes_on(tmp_path: Path,
                                                           synchronous: bool) -> None:
    log = PredictionLog(tmp_path, 1.0, "digits", "digits", synchronous=synchronous)
    other = sqlite3.connect(log.path)
    other.execute("DROP TABLE predictions")  # every later write fails
    other.close()
    for i in range(3):
        log.record(np.full((1, 64), i, np.float32), _answer(i))  # never raises
    log.close()
    assert log.dropped == 3
    assert "no such table" in (log.error or "")


def test_a_row_it_did_not_write_is_a_value_error_naming_it(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, 1.0, "digits", "digits", synchronous=True)
    log.record(np.zeros((1, 64), np.float32), _answer(0))
    log.close()
    db = sqlite3.connect(tmp_path / f"predictions-{os.getpid()}.sqlite")
    with db:
        db.execute("UPDATE predictions SET output = '[{\"class\": 3}]'")
    db.close()
    with pytest.raises(ValueError, match="row 1 is not a logged prediction"):
        list(read_log(tmp_path))
