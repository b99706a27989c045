"""Repeated stages (``--trials N``): median, a 95% confidence interval, and whether two
targets really differ.

Each trial of a stage gives one throughput and one p50/p99; trials are the independent
repetitions, so the statistics are over them (never over the requests of one trial, which
are not independent of each other). With few trials:

* **Confidence interval**: Student's t interval of the mean over the trials,
  mean ± t(0.975, n-1) · s / sqrt(n), as SeBS reports it. A median's distribution-free
  interval needs at least 6 trials to reach 95% at all, so the t interval is the honest
  choice for the 3-5 trials a benchmark can afford; it assumes the trial means are roughly
  normal.
  The report prints it next to the mean it is centred on, with the median beside.
* **Significance**: Welch's two-sample t-test (``scipy.stats.ttest_ind(equal_var=False)``)
  on two targets' per-trial figures at the same load, two-sided, at the 5% level: throughput
  for closed-loop stages, p99 latency for open-loop ones (their throughput is the offered
  rate). Only VALID trials count. Above 5% the report calls the difference a tie. (A
  Mann-Whitney U test cannot reach p < 0.05 with 3 trials a side, so it would call
  everything a tie.) Only from MIN_TRIALS_TO_TEST trials a side: one run's windows are
  no sample of runs, so a single run gets ratios and spreads, never a verdict.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from reports.format import fmt_ms, fmt_rps, stage_load
from reports.schema import RunDoc, StageResult, TargetResult

ALPHA = 0.05
CONFIDENCE = 0.95
#: Trials a side needs before two figures are tested against each other. One run's
#: measurement windows are back to back and kept *because* they agreed: their spread is
#: biased low, and a test over them gives p-values far too small. With fewer trials the
#: report gives ratios and window spread, labelled as one run's, and no verdict.
MIN_TRIALS_TO_TEST = 3


@dataclass(frozen=True)
class Estimate:
    n: int
    median: float
    mean: float
    #: Half-width of the 95% t interval of the mean (None with one value).
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def estimate(values: list[float]) -> Estimate:
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    n = len(arr)
    half = None
    if n >= 2:
        sd = float(arr.std(ddof=1))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(n, float(np.median(arr)), float(arr.mean()), half)


def stage_metric(stage: StageResult, metric: str) -> float | None:
    """A stage's headline figure by name: ``rps``, ``errors`` (the error rate) or a
    latency percentile key (``p50``, ``p99``...; None when nothing succeeded or too few
    samples for it)."""
    if metric == "rps":
        return float(stage["rps"])
    if metric == "errors":
        return float(stage["error_rate"])
    latency = stage["latency_ms"]
    value = None if latency is None else latency.get(metric)
    return None if value is None else float(value)  # type: ignore[arg-type]


def trial_values(stages: list[StageResult], key: str) -> list[float]:
    """A figure's per-trial values at one load, when there are enough trials to test
    (MIN_TRIALS_TO_TEST); else []."""
    values = [v for s in stages if (v := stage_metric(s, key)) is not None]
    return values if len(values) >= MIN_TRIALS_TO_TEST else []


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; None when it cannot be computed."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return None  # nothing to test: too few trials, or no variation at all
    with warnings.catch_warnings():
        # One side constant (identical windows): scipy warns of precision loss, and the
        # test is still the right one (its variance comes from the other side).
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def level_key(stage: StageResult) -> tuple[str, float, bool]:
    """Which stages are repetitions of each other: same users (a sweep's steps apart from
    the fixed levels), or same share of capacity (or same rate), or the timeline."""
    if stage.get("mode") == "timeline":
        return ("timeline", 0.0, False)
    if stage.get("mode") == "open":
        ol = stage.get("open_loop")
        fraction = ol["fraction"] if ol else None
        if fraction:
            return ("fraction", float(fraction), False)
        return ("rate", float((ol["rate"] if ol else None) or 0), False)
    return ("users", float(stage["concurrency"] or 0), bool(stage.get("sweep")))


def groups(target: TargetResult) -> dict[tuple[str, float, bool], list[StageResult]]:
    out: dict[tuple[str, float, bool], list[StageResult]] = {}
    for s in target["stages"]:
        out.setdefault(level_key(s), []).append(s)
    return out


def has_trials(run: RunDoc) -> bool:
    return int(run["metadata"].get("trials", 1) or 1) > 1


def _p(stage: StageResult, key: str) -> float | None:
    lat = stage["latency_ms"]
    return None if lat is None else lat[key]  # type: ignore[literal-required]


def summary_rows(run: RunDoc) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for t in run["targets"]:
        for stages in groups(t).values():
            rps = estimate([s["rps"] for s in stages])
            p99s = [v for s in stages if (v := _p(s, "p99")) is not None]
            p99 = estimate(p99s) if p99s else None
            valid = sum(1 for s in stages if s.get("valid", True))
            ci = (f"{fmt_rps(rps.mean)} ± {fmt_rps(rps.half_width)}"
                  if rps.half_width is not None else "-")
            p99_ci = (f"{fmt_ms(p99.mean)} ± {fmt_ms(p99.half_width)}"
                      if p99 is not None and p99.half_width is not None else "-")
            rows.append((t["name"], stage_load(stages[0]), str(rps.n), fmt_rps(rps.median),
                         ci, fmt_ms(p99.median if p99 else None), p99_ci,
                         f"{valid}/{len(stages)}"))
    return rows


def comparisons(run: RunDoc) -> list[str]:
    """At each load every measured target shares: the fastest against each other one."""
    by_target = {t["name"]: groups(t) for t in run["targets"] if t["status"] == "ok"}
    keys: list[tuple[str, float, bool]] = []
    for g in by_target.values():
        keys.extend(k for k in g if k not in keys)
    out = []
    for key in keys:
        # Closed loop: throughput, higher is better. Open loop: the offered rate sets the
        # throughput, so p99 latency, lower is better. VALID trials only.
        closed = key[0] == "users"
        present: dict[str, list[float]] = {}
        for name, g in by_target.items():
            values = [s["rps"] if closed else _p(s, "p99") for s in g.get(key, [])
                      if s.get("valid", True)]
            if any(v is not None for v in values) or key in g:
                present[name] = [float(v) for v in values if v is not None]
        if len(present) < 2:
            continue
        ranked = sorted(present, key=lambda n: float(np.median(present[n]))
                        if present[n] else (-np.inf if closed else np.inf), reverse=closed)
        best = ranked[0]
        label = stage_load(by_target[best][key][0])
        unit, fmt = ("req/s", fmt_rps) if closed else ("ms p99", fmt_ms)
        better = "faster" if closed else "lower p99"
        for other in ranked[1:]:
            a, b = present[best], present[other]
            if not a or not b:
                out.append(f"At {label}: {best} vs {other}: no VALID trials to compare on "
                           f"one side")
                continue
            p = welch_p(a, b) if min(len(a), len(b)) >= MIN_TRIALS_TO_TEST else None
            if p is None:
                verdict = (f"not tested (fewer than {MIN_TRIALS_TO_TEST} VALID trials a "
                           "side, or no variation)")
            elif p < ALPHA:
                verdict = f"{best} is {better} (Welch's t-test p = {p:.2g})"
            else:
                verdict = f"a tie: not significant at 5% (Welch's t-test p = {p:.2g})"
            out.append(f"At {label}: {best} {fmt(float(np.median(a)))} vs {other} "
                       f"{fmt(float(np.median(b)))} {unit} (medians of {len(a)} and {len(b)} "
                       f"VALID trials): {verdict}")
    return out


TRIAL_HEADERS = ("target", "load", "trials", "median req/s", "mean ± 95% CI req/s",
                 "median p99 ms", "mean ± 95% CI p99 ms", "valid")


def describe_method() -> str:
    return ("Trials: every stage was run N times in turn (all levels once, then again); "
            "tables give the median over trials and the mean with its 95% Student-t "
            "confidence interval; two targets differ only when Welch's t-test on their "
            "VALID trials (throughput in closed loop, p99 in open loop) gives p < 0.05, "
            "otherwise they are called a tie.")
