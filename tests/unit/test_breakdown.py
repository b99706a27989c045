"""The report's latency breakdown: slices that add up to the median they split, an
encoding slice of only the steps a measured request went through, and a row whose
timed parts overran its median said as such, not passed off as a split."""

from __future__ import annotations

from typing import Any

import pytest

from reports import breakdown
from reports.schema import upgrade
from tests.unit import runs

#: The four encoding steps of a served digits request as harness.breakdown times them.
CODEC = {"request_encode_ms": 0.030, "request_decode_ms": 0.020, "response_encode_ms": 0.004,
         "response_decode_ms": 0.006, "total_ms": 0.060, "on_path_ms": 0.030}


def served_run(p50_ms: float, codec: dict[str, Any] | None = CODEC) -> Any:
    """In-process and Flask at 1, 4 and 8 users (the common load: 4)."""
    served = runs.target("flask", [runs.stage(1, 1500, p50_ms, p50_ms * 2),
                                   runs.stage(4, 2500, p50_ms * 1.6, p50_ms * 4),
                                   runs.stage(8, 2600, p50_ms * 3, p50_ms * 8)])
    served["codec"] = codec
    return runs.run([runs.target("inprocess", [runs.stage(1, 9000, 0.100, 0.2),
                                               runs.stage(4, 9500, 0.150, 0.3),
                                               runs.stage(8, 9500, 0.300, 0.6)]), served])


def test_slices_add_up_to_the_median_they_split() -> None:
    rows = {r.name: r for r in breakdown.breakdown(served_run(0.600))}
    flask = rows["flask"]
    assert flask.parts["model"] == pytest.approx(0.100)
    assert flask.parts["encoding"] == pytest.approx(0.030)  # on the path: not 0.060
    assert flask.parts["transport"] == pytest.approx(0.470)
    assert flask.low_sum_ms() == pytest.approx(0.600)
    assert flask.parts["queueing"] == pytest.approx(0.360)
    assert sum(flask.parts.values()) == pytest.approx(flask.total_common_ms)
    assert flask.overrun_ms == 0.0
    assert rows["inprocess"].low_sum_ms() == pytest.approx(0.100)


def test_the_request_encoding_done_before_the_load_is_not_subtracted() -> None:
    """The load sends requests encoded once, before it: only the server's two steps and
    the client's decode of the answer are in the measured latency."""
    [_, flask] = breakdown.breakdown(served_run(0.600, {**CODEC, "request_encode_ms": 5.0,
                                                        "total_ms": 5.030}))
    assert flask.parts["encoding"] == pytest.approx(0.030)


def test_a_run_from_before_the_users_decoded_answers_subtracts_the_server_steps() -> None:
    """Such runs (schema 4) recorded no on_path_ms: loading them (the upgrade to 5) fills
    it with the server's two steps."""
    old = {k: v for k, v in CODEC.items() if k != "on_path_ms"}
    run = served_run(0.600, old)
    run["schema_version"] = 4
    [_, flask] = breakdown.breakdown(upgrade(run))
    assert flask.parts["encoding"] == pytest.approx(0.024)  # request decode, answer encode


def test_timed_parts_over_the_median_are_said_not_hidden() -> None:
    run = served_run(0.110)  # model 0.100 + encoding 0.030 > 0.110
    [_, flask] = breakdown.breakdown(run)
    assert flask.parts["transport"] == 0.0
    assert flask.overrun_ms == pytest.approx(0.020)
    table = breakdown.table(run)
    assert table is not None
    assert "For flask the timed parts exceed its median by 0.020 ms" in (table.caption or "")
    fits = breakdown.table(served_run(0.600))
    assert fits is not None
    assert "exceed" not in (fits.caption or "")
