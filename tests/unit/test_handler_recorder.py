"""The in-process driver's recorder (harness.loadgen.handlers.HandlerRecorder): records appended
by handler threads without a lock are taken in whole, in completion order, and a stage's
close counts each request once, answered or unanswered."""

from __future__ import annotations

from array import array

import numpy as np

from harness.loadgen.handlers import HandlerRecorder


def record(slot: array[float], sent: float, latency_ms: float, ok: bool = True) -> None:
    slot.extend((sent, latency_ms, ok, 0.0, 0.0))


def test_records_are_taken_in_by_completion_time() -> None:
    rec = HandlerRecorder()
    a, b = rec.slot(), rec.slot()
    record(a, 10.0, 5000.0)  # completes at 15 s
    record(b, 11.0, 1000.0)  # completes at 12 s
    record(a, 15.0, 500.0)   # completes at 15.5 s
    assert len(rec) == 3
    cols = rec.columns()
    assert list(cols.start_s) == [11.0, 10.0, 15.0]
    assert cols.ok.all()


def test_a_torn_record_waits_for_its_end() -> None:
    rec = HandlerRecorder()
    a = rec.slot()
    record(a, 1.0, 1.0)
    a.extend((2.0, 1.0))  # a record half appended: not taken in yet
    assert len(rec) == 1
    a.extend((1.0, 0.0, 0.0))
    assert len(rec) == 2


def test_close_counts_each_request_once() -> None:
    rec = HandlerRecorder()
    a, b, c = rec.slot(), rec.slot(), rec.slot()
    record(a, 1.0, 2.0)
    # The drain read three requests in flight; thread a recorded its answer just after
    # that reading, b is still in its call, c's last record is an older request.
    record(c, 0.5, 1.0)
    in_flight = [1.0, 2.0, 3.0]
    unanswered = rec.close(in_flight)
    assert unanswered == [2.0, 3.0]
    # An answer after the close is not taken in: it was counted as unanswered.
    record(b, 2.0, 9.0)
    assert len(rec) == 2
    for sent in unanswered:
        rec.record_unanswered(sent, 100.0, "no answer within the drain timeout")
    cols = rec.columns()
    assert len(cols.start_s) == 4
    assert int(np.sum(~cols.ok)) == 2
    assert rec.error_kinds["no answer within the drain timeout"] == 2


def test_a_window_scan_starts_at_the_previous_edges_chunk() -> None:
    rec = HandlerRecorder()
    a = rec.slot()
    record(a, 1.0, 1.0)
    record(a, 2.0, 1.0)
    first_edge = len(rec)  # chunk [0, 2)
    record(a, 3.0, 1.0)
    second_edge = len(rec)  # chunk [2, 3)
    assert rec.scan_start(first_edge) == 0
    assert rec.scan_start(second_edge) == first_edge


def test_clear_starts_a_new_stage() -> None:
    rec = HandlerRecorder()
    a = rec.slot()
    record(a, 1.0, 1.0)
    rec.close([])
    rec.clear()
    record(a, 2.0, 1.0)  # a slot of the last stage: not this one's
    b = rec.slot()
    record(b, 3.0, 1.0)
    assert len(rec) == 1
    assert list(rec.columns().start_s) == [3.0]
