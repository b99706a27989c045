"""Trials (``--trials N``): two targets compared over their per-trial figures, each
comparison a tie or a difference by Welch's t-test, with the test named."""

from __future__ import annotations

import re
from typing import Any

from reports import document, trials
from reports.schema import StageResult
from tests.unit import runs


def closed(users: int, per_trial: list[float]) -> list[StageResult]:
    out = []
    for trial, rps in enumerate(per_trial):
        stage: Any = runs.stage(users, rps, 2.0, 5.0)
        stage["trial"] = trial
        out.append(stage)
    return out


def open_loop(rate: float, p99_per_trial: list[float]) -> list[StageResult]:
    return [runs.open_stage(rate, rate, p99, trial=trial)
            for trial, p99 in enumerate(p99_per_trial)]


def two_fakes() -> Any:
    a = runs.target("fake-a", closed(1, [500, 510, 490]) + closed(4, [1000, 1010, 990])
                    + open_loop(200, [5.0, 5.2, 4.8]))
    b = runs.target("fake-b", closed(1, [505, 495, 500]) + closed(4, [800, 810, 790])
                    + open_loop(200, [9.0, 9.5, 8.5]))
    run = runs.run([a, b])
    run["metadata"]["trials"] = 3
    return run


def p_of(line: str) -> float:
    found = re.search(r"\(Welch's t-test p = ([0-9.e+-]+)\)$", line)
    assert found is not None, line
    return float(found.group(1))


def test_comparisons_call_ties_and_differences_by_welchs_test() -> None:
    run = two_fakes()
    lines = trials.comparisons(run)
    assert len(lines) == 3
    tie, faster, lower = lines
    # Same median, per-trial spread: not significant.
    assert tie.startswith("At 1 user: fake-a 500 vs fake-b 500 req/s (medians of 3 and 3 "
                          "VALID trials): a tie: not significant at 5% (Welch's t-test p = ")
    assert p_of(tie) >= trials.ALPHA
    # 1,000 against 800 req/s, 10 req/s apart between trials: significant.
    assert faster.startswith("At 4 users: fake-a 1,000 vs fake-b 800 req/s (medians of 3 and "
                             "3 VALID trials): fake-a is faster (Welch's t-test p = ")
    assert p_of(faster) < trials.ALPHA
    # Open loop: the offered rate sets the throughput, so p99 (lower is better) is compared.
    assert lower.startswith("At poisson 200/s: fake-a 5.00 vs fake-b 9.00 ms p99 (medians of 3 "
                            "and 3 VALID trials): fake-a is lower p99 (Welch's t-test p = ")
    assert p_of(lower) < trials.ALPHA
    # The summary of measurements carries them (instead of the one-run ratio).
    items = document.summary_items(run)
    assert set(lines) <= set(items)
    assert not any("peak throughput of" in item for item in items)


def test_invalid_trials_do_not_count() -> None:
    run = two_fakes()
    for stage in run["targets"][1]["stages"][3:6]:  # fake-b at 4 users
        stage["valid"] = False
    lines = trials.comparisons(run)
    assert "At 4 users: fake-a vs fake-b: no VALID trials to compare on one side" in lines
