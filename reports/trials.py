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
* **Significance**: Welch's two-sample t-test (``scipy.stats.ttest_ind(equal_var=False)``)
  on two targets' per-trial throughput at the same load, two-sided, at the 5% level. Below
  that the report calls the difference a tie. (A Mann-Whitney U test cannot reach p < 0.05
  with 3 trials a side, so it would call everything a tie.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reports.format import stage_load
from reports.schema import RunDoc, StageResult, TargetResult

ALPHA = 0.05
CONFIDENCE = 0.95


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


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test; None when it cannot be computed."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    if np.std(a) == 0 and np.std(b) == 0:
        return 0.0 if np.mean(a) != np.mean(b) else 1.0
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def level_key(stage: StageResult) -> tuple[str, float]:
    """Which stages are repetitions of each other: same users, or same share of capacity
    (or same rate)."""
    if stage.get("mode") == "open":
        ol = stage.get("open_loop") or {}
        fraction = ol.get("fraction")
        return ("fraction", float(fraction)) if fraction else ("rate", float(ol.get("rate", 0)))
    return ("users", float(stage["concurrency"] or 0))


def groups(target: TargetResult) -> dict[tuple[str, float], list[StageResult]]:
    out: dict[tuple[str, float], list[StageResult]] = {}
    for s in target["stages"]:
        out.setdefault(level_key(s), []).append(s)
    return out


def has_trials(run: RunDoc) -> bool:
    return int(run["metadata"].get("trials", 1) or 1) > 1


def _p(stage: StageResult, key: str) -> float | None:
    lat = stage["latency_ms"]
    return None if lat is None else lat[key]  # type: ignore[literal-required]


def summary_rows(run: RunDoc) -> list[tuple[str, ...]]:
    from reports.format import fmt_ms, fmt_rps

    rows: list[tuple[str, ...]] = []
    for t in run["targets"]:
        for stages in groups(t).values():
            rps = estimate([s["rps"] for s in stages])
            p99s = [v for s in stages if (v := _p(s, "p99")) is not None]
            p99 = estimate(p99s) if p99s else None
            valid = sum(1 for s in stages if s.get("valid", True))
            ci = (f"{fmt_rps(rps.low)}-{fmt_rps(rps.high)}" if rps.half_width is not None
                  else "-")
            p99_ci = (f"{fmt_ms(p99.low)}-{fmt_ms(p99.high)}"
                      if p99 is not None and p99.half_width is not None else "-")
            rows.append((t["name"], stage_load(stages[0]), str(rps.n), fmt_rps(rps.median),
                         ci, fmt_ms(p99.median if p99 else None), p99_ci,
                         f"{valid}/{len(stages)}"))
    return rows


def comparisons(run: RunDoc) -> list[str]:
    """At each load every measured target shares: the fastest against each other one."""
    from reports.format import fmt_rps

    by_target = {t["name"]: groups(t) for t in run["targets"] if t["status"] == "ok"}
    keys: list[tuple[str, float]] = []
    for g in by_target.values():
        keys.extend(k for k in g if k not in keys)
    out = []
    for key in keys:
        present = {name: [s["rps"] for s in g[key]] for name, g in by_target.items()
                   if key in g}
        if len(present) < 2:
            continue
        ranked = sorted(present, key=lambda n: float(np.median(present[n])), reverse=True)
        best = ranked[0]
        label = stage_load(by_target[best][key][0])
        for other in ranked[1:]:
            a, b = present[best], present[other]
            p = welch_p(a, b)
            ma, mb = float(np.median(a)), float(np.median(b))
            if p is None:
                verdict = "too few trials to test"
            elif p < ALPHA:
                verdict = f"{best} is faster (Welch's t-test p = {p:.2g})"
            else:
                verdict = f"a tie: not significant at 5% (Welch's t-test p = {p:.2g})"
            out.append(f"At {label}: {best} {fmt_rps(ma)} vs {other} {fmt_rps(mb)} req/s "
                       f"(medians of {len(a)} and {len(b)} trials): {verdict}")
    return out


TRIAL_HEADERS = ("target", "load", "trials", "median req/s", "95% CI req/s", "median p99 ms",
                 "95% CI p99 ms", "valid")


def describe_method() -> str:
    return ("Trials: every stage was run N times in turn (all levels once, then again); "
            "tables give the median over trials and a 95% Student-t confidence interval of "
            "the mean; two targets differ only when Welch's t-test on their per-trial "
            "throughput gives p < 0.05, otherwise they are called a tie.")
