"""Two runs side by side (``deploybench compare A B``): what changed, by how much, and
whether the change is more than the noise, with a CI gate (``--fail-on p99:+10%``).

Rendered from the two ``run.json`` files alone.

**Matching.** Per target, stages are matched by what load they offered, with the key the
*Trials* table uses (:func:`reports.trials.level_key`): closed loop by users (a sweep's
steps apart from fixed levels), open loop by the offered rate, or by the share of
capacity for ``rate_fractions`` stages (their rate follows each run's own measured
capacity, so it cannot match between runs; at the same share it is the comparable load).
With ``--trials`` a key holds one stage per trial.

**Metrics.** ``rps`` (successful answers per second), ``p50``/``p99`` latency (ms) and
``errors`` (the error rate). The change is B's value relative to A's (``+12%``); for
errors it is the difference of the two rates in percentage points.

**Uncertainty.** Each side's value gets a standard error:

* several trials of the stage: the mean over the trials is the value and its standard
  error is s / sqrt(n) over the per-trial values (n - 1 degrees of freedom);
* one trial: the stage's own figure is the value, and the standard error of the mean over
  its kept measurement windows (their rps, p50_ms, p99_ms; k - 1 degrees of freedom) its
  uncertainty. The kept windows are the ones the stability rule found to agree, so this
  is a floor on the noise between runs; trials measure that noise directly;
* otherwise unknown (``± ?``): one kept window, windows without ``p99_ms`` (schema < 4),
  or the error rate of a single trial (windows record no errors, and the requests of one
  stage are not independent, so a binomial interval would overstate the precision).

The two are combined by first-order error propagation (the delta method): for
R = B / A, se(R)^2 = (se_B / A)^2 + (B se_A / A^2)^2; for the error-rate difference,
se^2 = se_A^2 + se_B^2. The 95% half-width is t(0.975, df) * se, with df from the
Welch-Satterthwaite equation over the two contributions. A change whose interval
includes 0 is *within noise*. One whose interval excludes 0 is a REGRESSION or an
improvement only when both sides have at least ``MIN_TRIALS_TO_TEST`` (3) trials, the
rule the report's own "they differ" follows: from one run's windows (or two trials) it is
*worse* or *better beyond the spread (untested)*, since back-to-back windows kept because
they agreed understate the noise between runs.

**Gate.** ``--fail-on METRIC:±N%`` fails when, for any matched stage of any target, the
point change is beyond N in the bad direction *and* its interval excludes 0 (over trials
or, untested, over windows: a gate errs towards failing); where the uncertainty is
unknown the point change alone decides. A target that failed in B but ran in A fails any
gate.
"""

from __future__ import annotations

import argparse
import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reports import monitormodes
from reports.format import fmt_ms, fmt_rps, stage_load
from reports.loads import WINDOW_FIELD
from reports.schema import RunDoc, StageResult, TargetResult, deployment
from reports.trials import MIN_TRIALS_TO_TEST, level_key, stage_metric

CONFIDENCE = 0.95
METRICS = ("rps", "p50", "p99", "errors")
#: The field of a measurement window that gives each metric's spread.
#: Metadata that, when it differs, means the runs measured more than the change under test.
#: Not the hostname: CI runners are new machines of one kind every time.
MACHINE_KEYS = ("cpu_model", "cpu_count", "target_cpus", "loadgen_cpus")
SETUP_KEYS = ("bundle", "scenario_sha256", "python", "torch", "locust", "deploybench",
              "git_commit")
FAIL_ON_FORM = ("use METRIC:+N% for p50, p99 or errors (a rise; errors in percentage "
                "points, errors:+0 for any rise) or rps:-N% (a fall), e.g. p99:+10%,rps:-5%")
_SPEC = re.compile(r"^(rps|p50|p99|errors):([+-]?)(\d+(?:\.\d*)?)(%?)$")


@dataclass(frozen=True)
class Estimate:
    """One side's value of a metric at one load, and its standard error (None: unknown)."""

    value: float | None
    se: float | None = None
    #: Degrees of freedom behind ``se`` (values - 1).
    dof: int = 0
    #: "trials" (mean over them), "windows" (the stage's figure, spread of its windows)
    #: or "stage" (the stage's figure, no spread).
    source: str = "stage"
    n: int = 1


@dataclass(frozen=True)
class Change:
    target: str
    load: str
    metric: str
    a: Estimate
    b: Estimate
    #: B against A as a fraction (+0.12 = +12%); errors: B's rate minus A's.
    delta: float | None
    #: 95% confidence half-width of ``delta``; None when unknown.
    half_width: float | None
    #: "A", "B": the sides with an INVALID stage among those compared.
    invalid: tuple[str, ...] = ()

    @property
    def significant(self) -> bool | None:
        if self.delta is None or self.half_width is None:
            return None
        return abs(self.delta) > self.half_width

    @property
    def worse(self) -> bool:
        return self.delta is not None and (self.delta < 0 if self.metric == "rps"
                                           else self.delta > 0)

    @property
    def tested(self) -> bool:
        """Both sides' spreads come from enough trials to test a difference (as the
        report's "they differ" does): not one run's windows."""
        return all(e.source == "trials" and e.n >= MIN_TRIALS_TO_TEST
                   for e in (self.a, self.b))

    @property
    def verdict(self) -> str:
        if self.delta is None:
            return "n/a"
        if self.half_width is None:
            return "no change" if self.delta == 0 else "noise unknown"
        if not self.significant:
            return "within noise"
        if not self.tested:
            return f"{'worse' if self.worse else 'better'} beyond spread (untested)"
        return "REGRESSION" if self.worse else "improvement"


@dataclass(frozen=True)
class FailOn:
    """One gate check: ``p99:+10%`` fails on a significant p99 rise of more than 10%."""

    metric: str
    #: A fraction (0.10); errors: a difference of rates (0.01 = 1 percentage point).
    threshold: float
    text: str

    def fails(self, c: Change) -> bool:
        if c.metric != self.metric:
            return False
        if c.delta is None:  # latency in A, none in B: nothing succeeded any more
            return c.a.value is not None and c.b.value is None
        bad = -c.delta if self.metric == "rps" else c.delta
        if bad <= self.threshold + 1e-12:
            return False
        return c.significant is not False  # unknown uncertainty: the point change decides


def parse_fail_on(text: str) -> list[FailOn]:
    """``p99:+10%,rps:-5%`` -> checks (an argparse type: bad input is a usage error)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = _SPEC.match(part.replace(" ", "").lower())
        if not m:
            raise argparse.ArgumentTypeError(f"bad --fail-on {part!r}: {FAIL_ON_FORM}")
        metric, sign, number, _ = m.groups()
        bad_sign = "-" if metric == "rps" else "+"
        if sign and sign != bad_sign:
            raise argparse.ArgumentTypeError(
                f"bad --fail-on {part!r}: {metric} fails on a "
                f"{'fall' if metric == 'rps' else 'rise'}, so write {metric}:{bad_sign}{number}%")
        out.append(FailOn(metric, float(number) / 100.0, f"{metric}:{bad_sign}{number}%"))
    if not out:
        raise argparse.ArgumentTypeError(f"empty --fail-on: {FAIL_ON_FORM}")
    return out


@dataclass
class Comparison:
    changes: list[Change] = field(default_factory=list)
    #: "target at load" present in one run only.
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    #: Targets that failed in B but ran in A (they fail any gate), with B's error.
    failed_in_b: list[str] = field(default_factory=list)
    #: Other target-level facts (only in one run, failed in A or in both).
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) / math.sqrt(len(arr))


def estimate(stages: Sequence[StageResult], metric: str) -> Estimate:
    """The value of ``metric`` over one load's stages (one per trial) and its uncertainty;
    INVALID trials are left out when two or more VALID ones remain (as the report does)."""
    valid = [s for s in stages if s.get("valid", True)]
    if len(valid) >= 2:
        stages = valid
    if len(stages) >= 2:
        values = [v for s in stages if (v := stage_metric(s, metric)) is not None]
        if len(values) >= 2:
            mean, se = _mean_se(values)
            return Estimate(mean, se, len(values) - 1, "trials", len(values))
        return Estimate(values[0] if values else None)
    stage = stages[0]
    value = stage_metric(stage, metric)
    key = WINDOW_FIELD.get(metric)
    kept = stage["windows_kept"]
    windows = stage["windows"][-kept:] if kept > 0 else []
    spread = [w.get(key) for w in windows] if key else []
    if value is None or len(spread) < 2 or any(v is None for v in spread):
        return Estimate(value)
    _, se = _mean_se([float(v) for v in spread if v is not None])
    return Estimate(value, se, len(spread) - 1, "windows", len(spread))


def combine(metric: str, a: Estimate, b: Estimate) -> tuple[float | None, float | None]:
    """B against A and its 95% half-width (see the module docstring for the method)."""
    if a.value is None or b.value is None:
        return None, None
    if metric == "errors":
        delta = b.value - a.value
        parts = None if a.se is None or b.se is None else [(a.se, a.dof), (b.se, b.dof)]
    else:
        if a.value <= 0:
            return None, None
        delta = b.value / a.value - 1.0
        parts = None if a.se is None or b.se is None else [
            (b.value * a.se / a.value**2, a.dof), (b.se / a.value, b.dof)]
    if parts is None:
        return delta, None
    se = math.sqrt(sum(c * c for c, _ in parts))
    if se == 0:
        return delta, 0.0
    dof = se**4 / sum(c**4 / d for c, d in parts if c > 0)
    from scipy import stats  # ~1 s: only when two runs are compared

    return delta, float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * se


def _groups(target: TargetResult) -> dict[tuple[str, float, bool], list[StageResult]]:
    out: dict[tuple[str, float, bool], list[StageResult]] = {}
    for s in target["stages"]:
        out.setdefault(level_key(s), []).append(s)
    return out


def _label(key: tuple[str, float, bool], a: StageResult, b: StageResult) -> str:
    label, other = stage_load(a), stage_load(b)
    if other != label:  # a share of capacity: each run's own rate
        label += f" [B: {other}]"
    return label + (" (sweep)" if key[2] else "")


def _renamed(target: TargetResult, side: str, other: RunDoc) -> str:
    """A hint when the other run measured the same deployment in the same encoding under
    another name (``flask`` in a run of one encoding, ``flask-json`` with --encodings),
    batched and monitored alike (``flask+batch`` and ``flask+metrics`` are other figures,
    not a rename)."""
    if "encoding" not in target:
        return ""
    same = [t["name"] for t in other["targets"] if t["name"] != target["name"]
            and "encoding" in t and deployment(t) == deployment(target)
            and t.get("encoding") == target.get("encoding")
            and bool(t.get("batching")) == bool(target.get("batching"))
            and monitormodes.mode(t) == monitormodes.mode(target)]
    if not same:
        return ""
    return (f" ({side}'s {same[0]} is the same deployment and encoding: `run --encodings` "
            "names results NAME-ENCODING, so compare runs made with the same --encodings)")


def target_names(run: RunDoc) -> list[str]:
    return [t["name"] for t in run["targets"]]


def compare(a: RunDoc, b: RunDoc, targets: Sequence[str] | None = None) -> Comparison:
    result = Comparison(warnings=run_warnings(a, b))
    by_a = {t["name"]: t for t in a["targets"]}
    by_b = {t["name"]: t for t in b["targets"]}
    names = list(dict.fromkeys([*by_a, *by_b]))
    for name in names if targets is None else [n for n in names if n in targets]:
        ta, tb = by_a.get(name), by_b.get(name)
        if ta is None or tb is None:
            only, there, other = ("B", "A", a) if ta is None else ("A", "B", b)
            present = ta or tb
            hint = _renamed(present, there, other) if present is not None else ""
            result.notes.append(f"{name}: only in {only}{hint}")
            continue
        if ta["status"] == "ok" and tb["status"] != "ok":
            result.failed_in_b.append(f"{name} failed in B ({tb['error']}) but ran in A")
            continue
        if ta["status"] != "ok" or tb["status"] != "ok":
            side = "both runs" if ta["status"] == tb["status"] else "A"
            result.notes.append(f"{name}: failed in {side}, nothing to compare")
            continue
        ga, gb = _groups(ta), _groups(tb)
        result.only_in_a += [f"{name} at {stage_load(g[0])}" for k, g in ga.items() if k not in gb]
        result.only_in_b += [f"{name} at {stage_load(g[0])}" for k, g in gb.items() if k not in ga]
        for key, sa in ga.items():
            if key not in gb:
                continue
            sb = gb[key]
            invalid = tuple(side for side, ss in (("A", sa), ("B", sb))
                            if not all(s.get("valid", True) for s in ss))
            for metric in METRICS:
                ea, eb = estimate(sa, metric), estimate(sb, metric)
                delta, half = combine(metric, ea, eb)
                result.changes.append(Change(name, _label(key, sa[0], sb[0]), metric, ea, eb,
                                             delta, half, invalid))
    return result


def _show(value: Any) -> str:
    return "not recorded" if value is None else str(value)


def run_warnings(a: RunDoc, b: RunDoc) -> list[str]:
    """What differs between the runs besides the change under test, each with both values."""
    out = []
    ma, mb = a["metadata"], b["metadata"]
    for key in (*MACHINE_KEYS, *SETUP_KEYS):
        if ma.get(key) != mb.get(key):
            out.append(f"{key} differs: {_show(ma.get(key))} in A, {_show(mb.get(key))} in B")
    sha_a, sha_b = a["bundle"].get("sha256"), b["bundle"].get("sha256")
    if sha_a != sha_b:
        out.append(f"the bundle's checksum differs: {_show(sha_a)} in A, {_show(sha_b)} in B "
                   "(the model itself is not the same)")
    if any(ma.get(k) != mb.get(k) for k in MACHINE_KEYS):
        out.append("the runs were measured on different machines or CPU splits, so part of "
                   "every change may be the machine's: compare runs from one machine with the "
                   "same --target-cpus/--loadgen-cpus")
    for side, run in (("A", a), ("B", b)):
        if run["status"] != "complete":
            out.append(f"run {side} is {run['status']}: targets or stages it did not reach "
                       "are missing from the comparison")
    return out


def gate(comparison: Comparison, checks: Sequence[FailOn]) -> list[str]:
    """What fails the gate: one line per failing (target, load, metric), and every target
    that failed in B but ran in A. Empty when ``checks`` is or nothing fails."""
    if not checks:
        return []
    out = []
    for c in comparison.changes:
        failing = [f.text for f in checks if f.fails(c)]
        if failing:
            why = ""
            if c.half_width is None and c.delta is not None:
                why = "; uncertainty unknown, judged on the point change"
            elif c.half_width is not None and not c.tested:
                why = ("; beyond the spread of one run's windows, untested: --trials 3 on "
                       "both runs tests it")
            out.append(f"{c.target} at {c.load} {c.metric} {change_text(c)} "
                       f"(beyond {', '.join(failing)}{why})")
    return out + comparison.failed_in_b


def metric_value(metric: str, value: float | None) -> str:
    """A metric's value with its unit (req/s, ms, % of requests)."""
    if value is None:
        return "-"
    if metric == "rps":
        return f"{fmt_rps(value)} req/s"
    if metric == "errors":
        return f"{value * 100:.2f}%"
    return f"{fmt_ms(value)} ms"


def change_text(c: Change) -> str:
    """A change and its uncertainty: +12% ± 3%, or in points for the error rate."""
    if c.delta is None:
        return "-"
    if c.metric == "errors":
        half = "?" if c.half_width is None else f"{c.half_width * 100:.2f}"
        return f"{c.delta * 100:+.2f} pp ± {half}{'' if c.half_width is None else ' pp'}"
    smallest = min(abs(c.delta), c.half_width if c.half_width is not None else math.inf)
    digits = 1 if smallest < 0.1 else 0
    half = "?" if c.half_width is None else f"{c.half_width * 100:.{digits}f}%"
    return f"{c.delta * 100:+.{digits}f}% ± {half}"


def legend(checks: Sequence[FailOn]) -> list[str]:
    lines = [
        "change: B against A, relative (errors: the error rate's difference in percentage "
        "points); ± is the 95% confidence half-width. Value and spread: with several trials "
        "of a stage, the mean over the trials and its standard error; else the stage's own "
        "figure and the standard error over its kept measurement windows (windows that "
        "agreed, so a floor on the noise: --trials measures it). A and B combined by error "
        "propagation, Student's t with Welch-Satterthwaite degrees of freedom.",
        "± ?: uncertainty unknown (one kept window, windows without p99, or the error rate "
        f"of a single trial). REGRESSION / improvement: the interval excludes 0, over at "
        f"least {MIN_TRIALS_TO_TEST} trials on both sides; worse / better beyond spread "
        "(untested): it excludes 0 but the spread is one run's windows (or two trials), "
        "which understate the noise between runs; within noise: it includes 0.",
    ]
    if checks:
        lines.append(f"gate ({', '.join(f.text for f in checks)}): fails on a change beyond "
                     "the threshold whose interval excludes 0, tested or not (a gate errs "
                     "towards failing); where the uncertainty is unknown the point change "
                     "alone decides. A target failed in B but not in A always fails it.")
    return lines


def render(comparison: Comparison, checks: Sequence[FailOn] = ()) -> list[str]:
    """The console lines (warnings apart: the caller prints them on stderr)."""
    rows = []
    for c in comparison.changes:
        marks = [c.verdict]
        failing = [f.text for f in checks if f.fails(c)]
        if failing:
            marks.append(f"fails {', '.join(failing)}")
        if c.invalid:
            marks.append(f"INVALID in {','.join(c.invalid)}")
        rows.append((c.target, c.load, c.metric, metric_value(c.metric, c.a.value), "→",
                     metric_value(c.metric, c.b.value), change_text(c), "  ".join(marks)))
    lines = []
    if rows:
        header = ("target", "load", "metric", "A", "", "B", "change", "verdict")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        right = {3, 6}
        for row in [header, *rows]:
            cells = [cell.rjust(w) if i in right else cell.ljust(w)
                     for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
            lines.append("  ".join(cells).rstrip())
    else:
        lines.append("no stage of any target was measured in both runs")
    lines += comparison.failed_in_b
    lines += comparison.notes
    if comparison.only_in_a:
        lines.append(f"only in A: {'; '.join(comparison.only_in_a)}")
    if comparison.only_in_b:
        lines.append(f"only in B: {'; '.join(comparison.only_in_b)}")
    counts = {v: sum(c.verdict == v for c in comparison.changes)
              for v in ("REGRESSION", "improvement", "within noise", "noise unknown")}
    untested = [c for c in comparison.changes if c.significant and not c.tested]
    worse = sum(c.worse for c in untested)
    lines.append(f"{counts['REGRESSION']} significant regression(s), {counts['improvement']} "
                 f"significant improvement(s), {worse} worse and {len(untested) - worse} "
                 f"better beyond the spread (untested), {counts['within noise']} within "
                 f"noise, {counts['noise unknown']} with unknown noise")
    return lines + [textwrap.fill(line, width=100) for line in legend(checks)]


def _estimate_json(e: Estimate) -> dict[str, Any]:
    return {"value": e.value, "se": e.se, "dof": e.dof, "source": e.source, "n": e.n}


def to_json(comparison: Comparison, checks: Sequence[FailOn], failures: Sequence[str],
            a_path: str, b_path: str) -> dict[str, Any]:
    return {
        "a": a_path, "b": b_path,
        "confidence": CONFIDENCE,
        "method": " ".join(legend(checks)),
        "warnings": comparison.warnings,
        "changes": [{
            "target": c.target, "load": c.load, "metric": c.metric,
            "a": _estimate_json(c.a), "b": _estimate_json(c.b),
            # Relative (a fraction), except errors: a difference of rates.
            "change": c.delta, "relative": c.metric != "errors",
            "half_width": c.half_width, "significant": c.significant, "verdict": c.verdict,
            "invalid": list(c.invalid), "fails": [f.text for f in checks if f.fails(c)],
        } for c in comparison.changes],
        "only_in_a": comparison.only_in_a, "only_in_b": comparison.only_in_b,
        "failed_in_b": comparison.failed_in_b, "notes": comparison.notes,
        "gate": {"fail_on": [f.text for f in checks], "failed": bool(failures),
                 "failures": list(failures)},
    }
