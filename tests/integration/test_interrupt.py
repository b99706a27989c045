"""Ctrl-C in the middle of a target's load: the partial run.json keeps the stages that
target had finished, and what the interrupted stage measured (marked as such)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from reports.schema import load_run, read_samples
from tests.integration.processes import alive, descendants

pytestmark = pytest.mark.integration

#: Two closed-loop stages whose windows never agree (tolerance 0), so each measures all
#: ten of its half-second windows: a signal 1.5 s after the first one ends falls in the
#: second one's measurement.
SCENARIO = """\
description: Two stages of ten short windows each, to interrupt in the second.
concurrency: [1, 2]
warmup_s: 0.3
window_s: 0.5
stability_windows: 2
stability_tolerance: 0.0
max_windows: 10
cooldown_s: 0.2
drain_timeout_s: 5
"""


def _start_flask_run(tmp_path: Path, scenario_yaml: str
                     ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`deploybench run` of flask on ``scenario_yaml``: the process, its --out folder and
    the file its stderr goes to."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(scenario_yaml)
    out, err_path = tmp_path / "run", tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--targets", "flask", "--bundle",
             "digits", "--scenario", str(scenario), "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=err,
        )
    return proc, out, err_path


def test_sigint_keeps_the_current_targets_stages(tmp_path: Path) -> None:
    proc, out, err_path = _start_flask_run(tmp_path, SCENARIO)
    # Rewritten (atomically) by the load generator after each stage it finishes.
    partial = out / ".work" / "flask" / "partial.json"
    seen: dict[int, psutil.Process] = {}
    try:
        first = None
        deadline = time.monotonic() + 180
        while first is None:
            assert time.monotonic() < deadline, "the first stage never finished"
            assert proc.poll() is None, err_path.read_text()[-3000:]
            for p in descendants(proc.pid):
                seen[p.pid] = p
            if partial.exists():
                stages = json.loads(partial.read_text())["stages"]
                first = stages[0] if stages else None
            time.sleep(0.1)
        time.sleep(1.5)  # the second stage's warm-up (0.3 s), then into its windows
        for p in descendants(proc.pid):
            seen[p.pid] = p
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        stderr = err_path.read_text()
        assert proc.returncode == 128 + signal.SIGINT, stderr
        assert "interrupted (SIGINT)" in stderr

        # Nothing left running: the server, its workers and the load generator.
        deadline = time.monotonic() + 30
        while alive(list(seen.values())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(list(seen.values())), \
            [p.cmdline() for p in alive(list(seen.values()))]
        assert not (out / ".work" / "flask").exists()

        run = load_run(out)
        assert run["status"] == "partial"
        assert run.get("stopped_by", "").startswith("it was interrupted (SIGINT)")
        [target] = run["targets"]
        assert target["name"] == "flask"
        assert target["status"] == "failed"
        assert str(target["error"]).startswith("interrupted (SIGINT) during its stage 2; the "
                                               "1 stage(s) it had finished and what the "
                                               "interrupted one measured are kept")
        done, cut = target["stages"]
        # The finished stage, with the figures the load generator measured for it.
        assert done["concurrency"] == 1
        quick = first["figures"]  # the load generator's own figures (protocol.QuickFigures)
        assert done["requests"] == quick["requests"] > 0
        assert done["rps"] == pytest.approx(quick["rps"])
        assert done["latency_ms"] is not None
        assert done["latency_ms"]["p99"] == pytest.approx(quick["p99_ms"])
        assert len(done["windows"]) == len(first["windows"]) == 10
        assert not any(r.startswith("interrupted") for r in done["reasons"])
        # The interrupted stage: what it measured until the signal, marked INVALID.
        assert cut["concurrency"] == 2
        assert not cut["valid"]
        assert cut["reasons"][0].startswith("interrupted: the load generator was stopped")
        assert not any(r.startswith("unstable") for r in cut["reasons"])  # not judged
        assert cut["requests"] > 0
        assert 1 <= len(cut["windows"]) < 10
        samples = read_samples(out)
        assert set(samples["target"]) == {"flask"}
        assert set(samples["stage"].tolist()) == {0, 1}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


#: A timeline of two long segments, to interrupt in the first.
TIMELINE = """\
description: Two long segments, to interrupt in the first.
timeline:
  - {users: 1, seconds: 60, label: long}
  - {users: 2, seconds: 60, label: longer}
sample_s: 0.5
warmup_s: 0.3
cooldown_s: 0.2
drain_timeout_s: 5
"""


def test_sigint_cuts_a_timeline_short_and_keeps_it(tmp_path: Path) -> None:
    """A timeline (spike, soak) stops at the signal, not after its segments: what it
    measured until then is kept, marked interrupted, and every process is gone."""
    proc, out, err_path = _start_flask_run(tmp_path, TIMELINE)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 180
        while not any("harness.loadgen.driver" in " ".join(p.cmdline()) for p in alive(list(
                seen.values()))):
            assert time.monotonic() < deadline, "the load generator never started"
            assert proc.poll() is None, err_path.read_text()[-3000:]
            for p in descendants(proc.pid):
                seen[p.pid] = p
            time.sleep(0.1)
        time.sleep(12.0)  # parity, spawn, warm-up, then seconds into the first segment
        for p in descendants(proc.pid):
            seen[p.pid] = p
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        stopped_in = time.monotonic() - started
        stderr = err_path.read_text()
        assert proc.returncode == 128 + signal.SIGINT, stderr
        # Well before the driver's 10 s grace: the timeline itself stopped.
        assert stopped_in < 8.0, stderr
        deadline = time.monotonic() + 30
        while alive(list(seen.values())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(list(seen.values())), \
            [p.cmdline() for p in alive(list(seen.values()))]

        run = load_run(out)
        assert run["status"] == "partial"
        [target] = run["targets"]
        [cut] = target["stages"]
        assert cut["timeline"]["segments"][0]["label"] == "long"
        assert len(cut["timeline"]["segments"]) == 1
        assert not cut["valid"]
        assert cut["reasons"][0].startswith("interrupted: the load generator was stopped")
        assert cut["requests"] > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
