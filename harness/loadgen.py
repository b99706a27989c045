"""Load generators: Locust in its own process (real) and a simulation (for unit tests).

Both turn a :class:`LoadJob` (a target's :class:`~targets.base.LoadSpec` and a scenario)
into one :class:`RawStage` per stage: raw per-request samples plus resource readings
taken at the edges of the measurement window. Statistics are computed from those by
:mod:`harness.stats`, the same way whatever produced them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.errors import UserError
from harness.parity import ParityError, parity_message
from harness.results import ParityResult
from scenarios.catalogue import Scenario
from targets.base import LoadSpec
from targets.bundle import Prediction
from targets.process import child_env, log_tail

#: Callback for progress: the driver's JSON events ({"event": "stage", "phase": ...}).
EventSink = Callable[[dict[str, Any]], None]

#: Beyond the scenario's own length, what a driver may take to start (imports, model
#: load for the in-process target) before it is killed as hung.
DRIVER_SLACK_S = 120.0
EXIT_PARITY = 3  # harness.driver.EXIT_PARITY (not imported: that module imports Locust)


class LoadGeneratorError(UserError):
    """The load generator failed; the message carries its log's tail."""


@dataclass(frozen=True)
class LoadJob:
    target: str
    spec: LoadSpec
    scenario: Scenario
    loadgen_cpus: list[int]
    #: Scratch folder for the plan and raw files; removed when the job ends.
    work_dir: Path
    log_path: Path
    #: In-process predictions, for targets whose parity the load generator checks.
    reference: list[list[Prediction]] | None = None


@dataclass
class RawStage:
    concurrency: int
    window_start: float
    window_end: float
    start_s: np.ndarray
    latency_ms: np.ndarray
    ok: np.ndarray
    #: Requests sent in the window still unanswered when the drain timed out (they are
    #: also failed samples, with the time waited as a lower bound of their latency).
    truncated: int
    #: Requests given up on at the drain timeout, whenever they were sent (a user stuck
    #: since the warm-up lowers the stage's real concurrency without failing in-window).
    unanswered: int
    target_cpu_percent: float | None
    target_cpu_s: float
    loadgen_cpu_percent: float | None
    loadgen_cpu_s: float
    target_rss_mb: float | None
    target_pss_mb: float | None
    target_peak_rss_mb: float | None = None
    #: A target process died or appeared during the stage: its CPU figures are incomplete.
    target_processes_changed: bool = False
    error_kinds: dict[str, int] = field(default_factory=dict)
    locust: dict[str, Any] = field(default_factory=dict)
    #: The warm-up as it ran (it waits for every user's first answer), and whether every
    #: user did have one before ``warmup_max_s``.
    warmup_s: float | None = None
    warmup_complete: bool = True
    #: True where the target marked the answer as a cold start (empty: none marked).
    cold: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def cold_flags(self) -> np.ndarray:
        return self.cold if len(self.cold) == len(self.ok) else np.zeros(len(self.ok), bool)

    def phases(self) -> np.ndarray:
        """Each sample's phase by send time: warmup, measure or cooldown."""
        out = np.full(len(self.start_s), "measure", dtype=object)
        out[self.start_s < self.window_start] = "warmup"
        out[self.start_s >= self.window_end] = "cooldown"
        return out


@dataclass
class LoadResult:
    stages: list[RawStage]
    #: Facts about the load generator's run (in-process model load time, ...).
    info: dict[str, Any]
    #: Parity checked by the load generator itself (in-process target), if it was.
    parity: ParityResult | None = None
    #: Why the load generator stopped before the last stage, if it did.
    error: str | None = None


class LoadGenerator(Protocol):
    def run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        """Drive ``job.spec`` through every stage of ``job.scenario``."""


def _plan(job: LoadJob) -> dict[str, Any]:
    spec, scenario = job.spec, job.scenario
    wire: dict[str, Any] = {k: v for k, v in spec.items() if k != "payloads"}
    if "payloads" in spec:
        wire["payloads"] = [
            {"body_b64": base64.b64encode(p["body"]).decode(), "headers": p["headers"]}
            for p in spec["payloads"]
        ]
    stage = {"warmup_s": scenario.warmup_s, "duration_s": scenario.duration_s,
             "cooldown_s": scenario.cooldown_s, "drain_timeout_s": scenario.drain_timeout_s,
             "warmup_max_s": max(scenario.warmup_max_s, scenario.warmup_s)}
    plan: dict[str, Any] = {
        "spec": wire,
        "stages": [{"concurrency": n, **stage} for n in scenario.concurrency],
        "loadgen_cpus": job.loadgen_cpus,
    }
    if job.reference is not None:
        plan["reference"] = [
            [{"label": p.label, "probabilities": list(p.probabilities)} for p in preds]
            for preds in job.reference
        ]
    return plan


class LocustLoadGenerator:
    """Runs :mod:`harness.driver` (Locust) in a fresh process pinned to its own CPUs."""

    def run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        work_dir = job.work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._run(job, on_event)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)  # samples live on in samples.csv.gz

    def _run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        plan_path = job.work_dir / "plan.json"
        plan_path.write_text(json.dumps(_plan(job)))
        scenario = job.scenario
        per_stage = (max(scenario.warmup_max_s, scenario.warmup_s) + scenario.duration_s
                     + scenario.cooldown_s + scenario.drain_timeout_s)
        budget = DRIVER_SLACK_S + per_stage * len(scenario.concurrency)
        with job.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness.driver", str(plan_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                env=child_env(), start_new_session=True,
            )
        try:
            self._follow(proc, budget, on_event)
        finally:
            _stop(proc)
        result_path = job.work_dir / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        if result is None or proc.returncode not in (0, 1, EXIT_PARITY):
            raise LoadGeneratorError(
                f"the load generator for {job.target} exited with code {proc.returncode} "
                f"and no result. Its log ({job.log_path}) says:\n{log_tail(job.log_path)}"
            )
        parity = result.pop("parity", None)
        if proc.returncode == EXIT_PARITY and parity is not None:
            raise ParityError(parity_message(job.target, parity["index"], parity["problem"]))
        stages = [_raw_stage(job.work_dir, s) for s in result.pop("stages")]
        error = result.pop("error", None)
        return LoadResult(stages, result, parity, error)

    @staticmethod
    def _follow(proc: subprocess.Popen[bytes], budget_s: float, on_event: EventSink) -> None:
        lines: queue.Queue[bytes | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + budget_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadGeneratorError(
                    f"the load generator ran past its time budget ({budget_s:.0f} s: the "
                    f"scenario's length plus {DRIVER_SLACK_S:.0f} s) and was stopped. A "
                    f"target that never answers holds it up; see the target's log"
                )
            try:
                line = lines.get(timeout=min(0.2, left))
            except queue.Empty:
                continue
            if line is None:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                return
            with contextlib.suppress(json.JSONDecodeError):
                on_event(json.loads(line))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the driver by its PID: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _raw_stage(work_dir: Path, stage: dict[str, Any]) -> RawStage:
    with np.load(work_dir / stage["samples"]) as data:
        start_s, latency_ms, ok = data["start_s"], data["latency_ms"], data["ok"]
        cold = data["cold"]
    return RawStage(
        concurrency=stage["concurrency"],
        window_start=stage["window_start"], window_end=stage["window_end"],
        start_s=start_s, latency_ms=latency_ms, ok=ok, truncated=stage["truncated"],
        unanswered=stage["unanswered"],
        target_cpu_percent=stage["target_cpu_percent"], target_cpu_s=stage["target_cpu_s"],
        loadgen_cpu_percent=stage["loadgen_cpu_percent"], loadgen_cpu_s=stage["loadgen_cpu_s"],
        target_rss_mb=stage["target_rss_mb"], target_pss_mb=stage["target_pss_mb"],
        target_peak_rss_mb=stage["target_peak_rss_mb"],
        target_processes_changed=stage["target_processes_changed"],
        error_kinds=stage["error_kinds"], locust=stage["locust"], cold=cold,
        warmup_s=stage["warmup_s"], warmup_complete=stage["warmup_complete"],
    )


class SimulatedLoadGenerator:
    """A deterministic closed-loop simulation of a fake target, for unit tests.

    ``capacity`` servers with a fixed ``service_time_s`` and N users with no think time:
    throughput is min(N, capacity) / service time and each request waits
    max(1, N / capacity) service times (Little's law). Nothing is random and no time
    passes, so statistics and reports can be tested exactly and fast.
    """

    def run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        spec, scenario = job.spec, job.scenario
        if spec.get("protocol") != "simulated":
            raise LoadGeneratorError(f"the simulated load generator cannot drive {job.target}")
        service = float(spec["service_time_s"])
        capacity = int(spec["capacity"])
        clock = 1_000_000.0  # an arbitrary, fixed epoch: results are reproducible
        stages = []
        for index, users in enumerate(scenario.concurrency):
            on_event({"event": "stage", "index": index, "phase": "measure",
                      "concurrency": users})
            busy = min(users, capacity)
            rate = busy / service
            latency_ms = service * max(1.0, users / capacity) * 1000.0
            window_start = clock + scenario.warmup_s
            window_end = window_start + scenario.duration_s
            stop = window_end + scenario.cooldown_s
            n = round(rate * (stop - clock))
            start_s = clock + np.arange(n) / rate
            ok_in_window = round(rate * scenario.duration_s)
            stages.append(RawStage(
                concurrency=users, window_start=window_start, window_end=window_end,
                start_s=start_s, latency_ms=np.full(n, latency_ms), ok=np.ones(n, dtype=bool),
                truncated=0, unanswered=0, target_cpu_percent=100.0 * busy / capacity,
                target_cpu_s=service * rate * scenario.duration_s,
                loadgen_cpu_percent=10.0, loadgen_cpu_s=0.1 * scenario.duration_s,
                target_rss_mb=100.0, target_pss_mb=90.0, target_peak_rss_mb=110.0,
                locust={"requests": ok_in_window, "failures": 0,
                        "rps": ok_in_window / scenario.duration_s},
            ))
            on_event({"event": "stage", "index": index, "phase": "done", "concurrency": users,
                      "requests": n})
            clock = stop + 1.0
        return LoadResult(stages, {"simulated": True})
