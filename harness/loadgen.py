"""Load generators: Locust in its own process (real) and a simulation (for unit tests).

Both turn a target's :class:`~targets.base.LoadSpec` and a scenario into one
:class:`RawStage` per stage: raw per-request samples plus resource readings taken at
the edges of the measurement window. Statistics are computed from those by
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
from scenarios.catalogue import Scenario
from targets.base import LoadSpec
from targets.process import log_tail

#: Callback for progress: the driver's JSON events ({"event": "stage", "phase": ...}).
EventSink = Callable[[dict[str, Any]], None]

#: Beyond the scenario's own length, what a driver may take to start (imports, model
#: load for the in-process target) and to drain, before it is killed as hung.
DRIVER_SLACK_S = 120.0


class LoadGeneratorError(UserError):
    """The load generator failed; the message carries its log's tail."""


@dataclass
class RawStage:
    concurrency: int
    window_start: float
    window_end: float
    start_s: np.ndarray
    latency_ms: np.ndarray
    ok: np.ndarray
    truncated: int
    target_cpu_percent: float | None
    target_cpu_s: float
    loadgen_cpu_percent: float | None
    target_rss_mb: float | None
    target_pss_mb: float | None
    loadgen_rss_mb: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)
    locust: dict[str, Any] = field(default_factory=dict)

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


class LoadGenerator(Protocol):
    def run(self, target: str, spec: LoadSpec, scenario: Scenario, loadgen_cpus: list[int],
            work_dir: Path, log_path: Path, on_event: EventSink) -> LoadResult:
        """Drive ``spec`` through every stage of ``scenario``; return the raw stages."""


def _plan(spec: LoadSpec, scenario: Scenario, loadgen_cpus: list[int]) -> dict[str, Any]:
    wire: dict[str, Any] = {k: v for k, v in spec.items() if k != "payloads"}
    if "payloads" in spec:
        wire["payloads"] = [
            {"body_b64": base64.b64encode(p["body"]).decode(), "headers": p["headers"]}
            for p in spec["payloads"]
        ]
    stage = {"warmup_s": scenario.warmup_s, "duration_s": scenario.duration_s,
             "cooldown_s": scenario.cooldown_s, "drain_timeout_s": scenario.drain_timeout_s}
    return {
        "spec": wire,
        "stages": [{"concurrency": n, **stage} for n in scenario.concurrency],
        "loadgen_cpus": loadgen_cpus,
    }


class LocustLoadGenerator:
    """Runs :mod:`scenarios.driver` (Locust) in a fresh process pinned to its own CPUs."""

    def run(self, target: str, spec: LoadSpec, scenario: Scenario, loadgen_cpus: list[int],
            work_dir: Path, log_path: Path, on_event: EventSink) -> LoadResult:
        work_dir.mkdir(parents=True, exist_ok=True)
        plan_path = work_dir / "plan.json"
        plan_path.write_text(json.dumps(_plan(spec, scenario, loadgen_cpus)))
        budget = (scenario.estimated_s + DRIVER_SLACK_S
                  + scenario.drain_timeout_s * len(scenario.concurrency))
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scenarios.driver", str(plan_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True,
            )
        try:
            self._follow(proc, budget, on_event)
        finally:
            _stop(proc)
        if proc.returncode != 0:
            raise LoadGeneratorError(
                f"the load generator for {target} exited with code {proc.returncode} "
                f"(log: {log_path}).\n{log_tail(log_path)}"
            )
        result = json.loads((work_dir / "result.json").read_text())
        stages = [_raw_stage(work_dir, s) for s in result.pop("stages")]
        shutil.rmtree(work_dir, ignore_errors=True)  # samples now live in samples.csv.gz
        return LoadResult(stages, result)

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
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise LoadGeneratorError(
                        f"the load generator ran past its time budget ({budget_s:.0f} s) "
                        f"and was stopped"
                    ) from None
                continue
            if line is None:
                proc.wait()
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
    return RawStage(
        concurrency=stage["concurrency"],
        window_start=stage["window_start"], window_end=stage["window_end"],
        start_s=start_s, latency_ms=latency_ms, ok=ok, truncated=stage["truncated"],
        target_cpu_percent=stage["target_cpu_percent"], target_cpu_s=stage["target_cpu_s"],
        loadgen_cpu_percent=stage["loadgen_cpu_percent"],
        target_rss_mb=stage["target_rss_mb"], target_pss_mb=stage["target_pss_mb"],
        loadgen_rss_mb=stage["loadgen_rss_mb"], error_kinds=stage["error_kinds"],
        locust=stage["locust"],
    )


class SimulatedLoadGenerator:
    """A deterministic closed-loop simulation of a fake target, for unit tests.

    ``capacity`` servers with a fixed ``service_time_s`` and N users with no think time:
    throughput is min(N, capacity) / service time and each request waits
    max(1, N / capacity) service times (Little's law). Nothing is random and no time
    passes, so statistics and reports can be tested exactly and fast.
    """

    def run(self, target: str, spec: LoadSpec, scenario: Scenario, loadgen_cpus: list[int],
            work_dir: Path, log_path: Path, on_event: EventSink) -> LoadResult:
        if spec.get("protocol") != "simulated":
            raise LoadGeneratorError(f"the simulated load generator cannot drive {target}")
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
            stages.append(RawStage(
                concurrency=users, window_start=window_start, window_end=window_end,
                start_s=start_s, latency_ms=np.full(n, latency_ms), ok=np.ones(n, dtype=bool),
                truncated=0, target_cpu_percent=100.0 * busy / capacity,
                target_cpu_s=service * rate * scenario.duration_s,
                loadgen_cpu_percent=10.0, target_rss_mb=100.0, target_pss_mb=90.0,
                loadgen_rss_mb=60.0,
                locust={"requests": round(rate * scenario.duration_s), "failures": 0},
            ))
            on_event({"event": "stage", "index": index, "phase": "done", "concurrency": users,
                      "requests": n})
            clock = stop + 1.0
        return LoadResult(stages, {"simulated": True})
