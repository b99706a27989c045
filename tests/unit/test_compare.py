"""`deploybench compare`: matching, uncertainty, verdicts and the --fail-on gate, on run
documents from the simulated path edited to plant (or not) a change."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from harness.cli import main
from harness.commands import EXIT_REGRESSION
from harness.results import write_run
from reports.compare import Estimate, combine
from reports.schema import RunDoc, StageResult, load_run
from tests.unit import runs


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> RunDoc:
    """Two simulated deployments ("fast", "slow"), their kept windows a few percent apart
    so every figure has a spread, as on a real machine."""
    return runs.spread_fast_slow(tmp_path_factory.mktemp("run"))


def stage(run: RunDoc, target: str, users: int) -> StageResult:
    t = next(t for t in run["targets"] if t["name"] == target)
    return next(s for s in t["stages"] if s["concurrency"] == users)


def scale(s: StageResult, metric: str, factor: float) -> None:
    """Scale a stage's figure and every one of its windows' by ``factor``."""
    if metric == "rps":
        s["rps"] *= factor
    else:
        assert s["latency_ms"] is not None
        s["latency_ms"][metric] *= factor  # type: ignore[literal-required]
    for window in s["windows"]:
        window[f"{metric}_ms" if metric != "rps" else "rps"] *= factor


@pytest.fixture
def pair(base_run: RunDoc, tmp_path: Path) -> Callable[..., tuple[str, str]]:
    """Write A (the base run) and B (a copy, edited by ``edit``), both edited by ``both``
    first; return their folders."""
    def make(edit: Callable[[RunDoc], Any] | None = None,
             both: Callable[[RunDoc], Any] | None = None) -> tuple[str, str]:
        a, b = copy.deepcopy(base_run), copy.deepcopy(base_run)
        if both:
            both(a)
            both(b)
        if edit:
            edit(b)
        for name, doc in (("a", a), ("b", b)):
            (tmp_path / name).mkdir()
            write_run(tmp_path / name, doc)
        return str(tmp_path / "a"), str(tmp_path / "b")

    return make


def line(out: str, target: str, load: str, metric: str) -> str:
    found = [ln for ln in out.splitlines()
             if ln.split()[:1] == [target] and f" {load} " in ln and f" {metric} " in ln]
    assert len(found) == 1, out
    return found[0]


def test_planted_p99_regression_fails_the_gate(pair: Callable[..., tuple[str, str]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair(lambda run: scale(stage(run, "fast", 4), "p99", 1.5))
    assert main(["compare", a, b, "--fail-on", "p99:+10%"]) == EXIT_REGRESSION == 3
    out = capsys.readouterr().out
    # One run a side: beyond the windows' spread, which is not a test (they understate
    # the noise between runs), so no "REGRESSION"; the gate still fails on it.
    assert "worse beyond spread (untested)" in line(out, "fast", "4 users", "p99")
    assert "REGRESSION" not in out.split("change: B against A")[0]
    assert "0 significant regression(s), 0 significant improvement(s), 1 worse and 0 better " \
           "beyond the spread (untested)" in out
    assert "+50% ± 10%" in line(out, "fast", "4 users", "p99")
    assert "fails p99:+10%" in line(out, "fast", "4 users", "p99")
    last = out.strip().splitlines()[-1]
    assert last.startswith("FAIL (p99:+10%): fast at 4 users p99 +50% ± 10% (beyond p99:+10%; "
                           "beyond the spread of one run's windows, untested: --trials 3")
    assert "slow" not in last
    assert "within noise" in line(out, "fast", "1 user", "p99")


def test_noise_within_the_windows_spread_passes(pair: Callable[..., tuple[str, str]],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    def jitter(run: RunDoc) -> None:
        for i, target in enumerate(run["targets"]):
            for j, s in enumerate(target["stages"]):
                factor = 1.0 + (0.01 if (i + j) % 2 else -0.01)
                for metric in ("rps", "p50", "p99"):
                    scale(s, metric, factor)

    a, b = pair(jitter)
    assert main(["compare", a, b, "--fail-on", "p99:+0%,p50:+0%", "--fail-on", "rps:-0%"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.split()[:1] in (["fast"], ["slow"])]
    assert len(rows) == 2 * 2 * 4  # targets x loads x metrics
    assert all(ln.endswith(("within noise", "no change")) for ln in rows), rows
    assert "0 significant regression(s), 0 significant improvement(s)" in out
    assert out.strip().splitlines()[-1].startswith("PASS (p99:+0%, p50:+0%, rps:-0%)")


def test_large_but_noisy_change_is_within_noise(pair: Callable[..., tuple[str, str]],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    def wide(run: RunDoc) -> None:  # windows 0.5x, 1x, 1.5x apart: a very noisy stage
        s = stage(run, "fast", 4)
        for window, factor in zip(s["windows"], (0.5, 1.0, 1.5), strict=True):
            window["p99_ms"] = 2.0 * factor

    a, b = pair(lambda run: scale(stage(run, "fast", 4), "p99", 1.4), both=wide)
    assert main(["compare", a, b, "--fail-on", "p99:+10%"]) == 0
    text = line(capsys.readouterr().out, "fast", "4 users", "p99")
    assert "+40%" in text
    assert "within noise" in text
    assert "fails" not in text


def test_throughput_drop_gate(pair: Callable[..., tuple[str, str]],
                              capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair(lambda run: scale(stage(run, "slow", 1), "rps", 0.8))
    assert main(["compare", a, b, "--fail-on", "rps:-5%"]) == 3
    out = capsys.readouterr().out
    assert "worse beyond spread (untested)" in line(out, "slow", "1 user", "rps")
    assert "slow at 1 user rps -20.0%" in out.strip().splitlines()[-1]
    # A fall smaller than the threshold passes, significant or not.
    assert main(["compare", a, b, "--fail-on", "rps:-25%"]) == 0


def test_error_rate_gate_in_percentage_points(pair: Callable[..., tuple[str, str]],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def errors(run: RunDoc) -> None:
        stage(run, "slow", 4)["error_rate"] = 0.03

    a, b = pair(errors)
    assert main(["compare", a, b, "--fail-on", "errors:+1%"]) == 3
    out = capsys.readouterr().out
    text = line(out, "slow", "4 users", "errors")
    assert "0.00%  →  3.00%" in text
    assert "+3.00 pp ± ?" in text
    assert "uncertainty unknown, judged on the point change" in out.strip().splitlines()[-1]
    assert main(["compare", a, b, "--fail-on", "errors:+5%"]) == 0
    assert main(["compare", a, b, "--fail-on", "errors:+0"]) == 3  # any rise


def test_different_machine_and_model_are_warned(pair: Callable[..., tuple[str, str]],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    def elsewhere(run: RunDoc) -> None:
        run["metadata"]["cpu_model"] = "Other CPU 9000"
        run["metadata"]["torch"] = "9.9.9"
        run["bundle"]["sha256"] = "f" * 64

    a, b = pair(elsewhere)
    assert main(["compare", a, b]) == 0
    err = capsys.readouterr().err
    model = load_run(Path(a))["metadata"]["cpu_model"]
    assert f"warning: cpu_model differs: {model} in A, Other CPU 9000 in B" in err
    assert "warning: torch differs:" in err
    assert "9.9.9 in B" in err
    assert "warning: the bundle's checksum differs:" in err
    assert "different machines or CPU splits" in err
    assert "hostname" not in err


def test_same_machine_gives_no_warning(pair: Callable[..., tuple[str, str]],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair()
    assert main(["compare", a, b]) == 0
    assert capsys.readouterr().err == ""


def test_windows_without_p99_give_unknown_uncertainty(
        pair: Callable[..., tuple[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    def drop_p99(run: RunDoc) -> None:  # as schema 3 wrote them
        for target in run["targets"]:
            for s in target["stages"]:
                for window in s["windows"]:
                    del window["p99_ms"]

    def plant(run: RunDoc) -> None:
        s = stage(run, "fast", 4)
        assert s["latency_ms"] is not None
        s["latency_ms"]["p99"] *= 1.05

    a, b = pair(plant, both=drop_p99)
    assert main(["compare", a, b, "--fail-on", "p99:+10%"]) == 0
    out = capsys.readouterr().out
    assert "+5.0% ± ?  noise unknown" in line(out, "fast", "4 users", "p99")
    assert "± ?  no change" in line(out, "fast", "1 user", "p99")
    assert "± ?" not in line(out, "fast", "4 users", "p50")  # p50 windows still spread
    assert main(["compare", a, b, "--fail-on", "p99:+4%"]) == 3
    assert "judged on the point change" in capsys.readouterr().out


@pytest.mark.parametrize(("spec", "message"), [
    ("p99:10ms", "use METRIC:+N%"),
    ("latency:+5%", "use METRIC:+N%"),
    ("rps:+5%", "rps fails on a fall, so write rps:-5%"),
    ("p99:-10%", "p99 fails on a rise, so write p99:+10%"),
])
def test_bad_fail_on_is_a_usage_error(spec: str, message: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compare", str(tmp_path), str(tmp_path), "--fail-on", spec])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bad --fail-on" in err
    assert message in err


def test_trials_give_the_uncertainty_and_json_is_written(
        pair: Callable[..., tuple[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    trial_rps = (1000.0, 980.0, 1020.0)

    def three_trials(run: RunDoc) -> None:
        for target in run["targets"]:
            stages = []
            for trial, rps in enumerate(trial_rps):
                for s in target["stages"]:
                    copy_ = copy.deepcopy(s)
                    copy_["trial"], copy_["rps"] = trial, rps
                    stages.append(copy_)
            target["stages"] = stages
        run["metadata"]["trials"] = 3

    a, b = pair(lambda run: [s.update(rps=s["rps"] * 0.9) for s in run["targets"][0]["stages"]],
                both=three_trials)
    out_json = tmp_path / "cmp" / "compare.json"
    out_json.parent.mkdir()
    assert main(["compare", a, b, "--targets", "fast", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "slow" not in out.split("only in")[0]
    doc = json.loads(out_json.read_text())
    change = next(c for c in doc["changes"]
                  if c["load"] == "1 user" and c["metric"] == "rps")
    assert change["a"]["source"] == "trials"
    assert change["a"]["n"] == 3
    assert change["a"]["value"] == pytest.approx(1000.0)
    # Both sides: relative standard error 20/sqrt(3)/1000 per side, 4 degrees of freedom
    # in all (Welch-Satterthwaite with equal parts), so: t(0.975, 4) * 0.9 * sqrt(2) * rse.
    rse = 20.0 / math.sqrt(3) / 1000.0
    assert change["change"] == pytest.approx(-0.1)
    assert change["half_width"] == pytest.approx(
        stats.t.ppf(0.975, 4) * 0.9 * math.sqrt(2) * rse)
    assert change["verdict"] == "REGRESSION"
    assert doc["gate"] == {"fail_on": [], "failed": False, "failures": []}
    assert not list(out_json.parent.glob(".*.tmp"))


def test_unmatched_stages_and_failed_target(pair: Callable[..., tuple[str, str]],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def edit(run: RunDoc) -> None:
        fast = run["targets"][0]
        fast["stages"] = [s for s in fast["stages"] if s["concurrency"] != 4]
        run["targets"][1] = {**run["targets"][1], "status": "failed", "stages": [],
                             "error": "slow server exited with code 3"}

    a, b = pair(edit)
    assert main(["compare", a, b]) == 0  # no gate: reported, not failed
    out = capsys.readouterr().out
    assert "only in A: fast at 4 users" in out
    assert "slow failed in B (slow server exited with code 3) but ran in A" in out
    assert main(["compare", a, b, "--fail-on", "p99:+50%"]) == 3
    assert "slow failed in B" in capsys.readouterr().out.strip().splitlines()[-1]


def test_unknown_target_is_a_user_error(pair: Callable[..., tuple[str, str]],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair()
    assert main(["compare", a, b, "--targets", "grpc"]) == 1
    assert capsys.readouterr().err.startswith("error: no target 'grpc' in either run. "
                                              "Choose from fast, slow")


def test_combine_propagates_standard_errors() -> None:
    a, b = Estimate(100.0, 2.0, 2), Estimate(110.0, 3.0, 2)
    delta, half = combine("p99", a, b)
    assert delta == pytest.approx(0.10)
    parts = (110.0 * 2.0 / 100.0**2, 3.0 / 100.0)
    se = math.hypot(*parts)
    dof = se**4 / (parts[0] ** 4 / 2 + parts[1] ** 4 / 2)
    assert half == pytest.approx(stats.t.ppf(0.975, dof) * se)
    delta, half = combine("p99", a, Estimate(110.0))
    assert delta == pytest.approx(0.10)
    assert half is None
    assert combine("errors", Estimate(0.01, 0.002, 2), Estimate(0.02, 0.0, 2))[0] == \
        pytest.approx(0.01)
    assert combine("p99", a, Estimate(None)) == (None, None)


def test_open_loop_matches_by_rate_or_share_of_capacity(
        pair: Callable[..., tuple[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    def open_loop(rate: float, fraction: float | None) -> Callable[[RunDoc], None]:
        def edit(run: RunDoc) -> None:
            for index, users, f in ((0, 1, fraction), (1, 4, None)):
                s = run["targets"][0]["stages"][index]
                s["mode"], s["concurrency"] = "open", None
                s["open_loop"] = {"rate": rate * users, "arrival": "poisson", "fraction": f}
        return edit

    # Same share of capacity, each run's own rate: matched. Another fixed rate: not.
    a, b = pair(open_loop(450.0, 0.5), both=open_loop(500.0, 0.5))
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    line(out, "fast", "poisson 500/s (50% of capacity) [B: poisson 450/s (50% of capacity)]",
         "p99")
    assert "only in A: fast at poisson 2,000/s" in out
    assert "only in B: fast at poisson 1,800/s" in out
