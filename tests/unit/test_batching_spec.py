"""The batching settings' syntax and the batch log the servers write and the harness reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from targets.batching import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_WAIT_MS,
    BatchingSpec,
    BatchLog,
    read_batch_log,
    sizes_between,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("max_batch=8,max_wait_ms=0", BatchingSpec(8, 0.0)),
    (" max_wait_ms = 1.5 ", BatchingSpec(DEFAULT_MAX_BATCH, 1.5)),
    ("max_batch=32", BatchingSpec(32, DEFAULT_MAX_WAIT_MS)),
    ("", BatchingSpec()),
])
def test_parse(text: str, expected: BatchingSpec) -> None:
    assert BatchingSpec.parse(text) == expected
    assert BatchingSpec.parse(str(expected)) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("max_batch", "write max_batch=N"),
    ("batch=3", "write max_batch=N"),
    ("max_batch=two", "whole number"),
    ("max_batch=0", "at least 1"),
    ("max_wait_ms=-1", "between 0 and 1000"),
    ("max_batch=2,max_batch=3", "given twice"),
])
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchingSpec.parse(text)


def test_the_log_round_trips_and_counts_by_window(tmp_path: Path) -> None:
    log = BatchLog(tmp_path / "b")
    assert log.path.name == f"batches-{os.getpid()}.log"
    for requests in (1, 3, 3, 2):
        log.record(requests, requests * 2)
    log.close()
    log.record(9, 9)  # after close: dropped, not an error
    # A second process's file, with a line cut short by a kill.
    (tmp_path / "b" / "batches-1.log").write_text("1.0 4 4\n2.0 5\n")
    # One whose last line has no newline yet: it may be cut short ("3" of "32"), skipped.
    (tmp_path / "b" / "batches-2.log").write_text("1.2 6 6\n3.0 32 3")
    rows = read_batch_log(tmp_path / "b")
    assert rows.shape == (6, 3)
    assert rows[0].tolist() == [1.0, 4.0, 4.0]
    assert sizes_between(rows, 0.0, 1.5) == {4: 1, 6: 1}
    assert sizes_between(rows, 1.5, float("inf")) == {1: 1, 2: 1, 3: 2}
    assert sizes_between(read_batch_log(tmp_path / "none"), 0, 1) == {}
