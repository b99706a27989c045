"""Load generators: Locust in its own process (real) and a simulation (for unit tests).

Both turn a :class:`LoadJob` (a target's :class:`~targets.base.LoadSpec` and a scenario)
into one :class:`RawStage` per stage: raw per-request samples plus resource readings
taken at the edges of the measurement window. Statistics are computed from those by
:mod:`harness.loadgen.analysis.stats`, the same way whatever produced them.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.errors import UserError
from harness.loadgen.protocol import (
    EXIT_PARITY,
    PARTIAL_FILE,
    PLAN_FILE,
    REMOTE_CONNECT_TIMEOUT_S,
    RESULT_FILE,
    Plan,
    Program,
    RawStage,
    Timing,
    read_raw_stage,
    timeline_budget_s,
)
from harness.parity import ParityError, parity_message
from harness.results import ParityResult
from scenarios.catalogue import Scenario
from targets.base import LoadSpec
from targets.bundles.protocol import Prediction
from targets.runtimes.process import child_env, log_tail
from targets.wire.codec import AnswerShape

#: Callback for progress: the driver's JSON events ({"event": "stage", "phase": ...}).
EventSink = Callable[[dict[str, Any]], None]

#: Beyond the scenario's own length, what a driver may take to start (imports, model
#: load for the in-process target) before it is killed as hung.
DRIVER_SLACK_S = 120.0
#: How long the driver gets after SIGTERM (it ends the stage under way, keeping what it
#: measured, and writes its result) before it is killed.
DRIVER_STOP_GRACE_S = 10.0


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
    #: What a well-formed answer to each example holds (targets.wire.codec.AnswerShape): the
    #: load users decode every answer and check it against this.
    answers: list[AnswerShape] | None = None
    #: Each stage is run this many times (the whole stage list, in turn, per trial).
    trials: int = 1
    #: The p99 objective sweeps stop at and capacity is taken within (None: none).
    slo_p99_ms: float | None = None
    #: Locust worker processes (harness.loadgen.swarm.master); 1 = one process, no master.
    loadgen_workers: int = 1
    #: Workers started elsewhere (``deploybench loadgen-worker``) the master waits for,
    #: where it listens for them (HOST:PORT), and whether this is the run's last job
    #: (they exit after it rather than wait for the next target's master).
    remote_workers: int = 0
    master: str | None = None
    final: bool = True


@dataclass
class LoadResult:
    stages: list[RawStage]
    #: Facts about the load generator's run (in-process model load time, ...).
    info: dict[str, Any]
    #: Parity checked by the load generator itself (in-process target), if it was.
    parity: ParityResult | None = None
    #: Why the load generator stopped before the last stage, if it did.
    error: str | None = None
    #: Ctrl-C (or SIGTERM/SIGHUP, harness.cli) during the load: the stages above are what
    #: was measured until then, and the caller raises this once it has kept them.
    interrupted: KeyboardInterrupt | None = None

    def checked(self) -> LoadResult:
        """This result, or the interrupt raised again: for callers with nothing to keep
        of an interrupted load (scripts, tests), so Ctrl-C still stops them."""
        if self.interrupted is not None:
            raise self.interrupted
        return self


class LoadGenerator(Protocol):
    def run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        """Drive ``job.spec`` through every stage of ``job.scenario``."""


def stage_budget_s(scenario: Scenario) -> float:
    """The longest one stage may take: warm-up, every window, cool-down and drain."""
    return (max(scenario.warmup_max_s, scenario.warmup_s)
            + scenario.longest_window_s * scenario.max_windows + scenario.cooldown_s
            + scenario.drain_timeout_s)


def load_budget_s(scenario: Scenario) -> float:
    """The longest one trial of the scenario's stages may take (a timeline in full)."""
    others = scenario.planned_stages() - (1 if scenario.timeline else 0)
    return stage_budget_s(scenario) * others + timeline_budget_s(scenario)


def plan_document(job: LoadJob) -> Plan:
    spec = job.spec
    wire: dict[str, Any] = {k: v for k, v in spec.items() if k != "payloads"}
    if "payloads" in spec:
        wire["payloads"] = [
            {"body_b64": base64.b64encode(p["body"]).decode(), "headers": p["headers"]}
            for p in spec["payloads"]
        ]
    wire["max_inflight"] = job.scenario.max_inflight
    if job.answers is not None:
        wire["answers"] = [list(shape) for shape in job.answers]
    reference = None if job.reference is None else [
        [{"label": p.label, "probabilities": list(p.probabilities)} for p in preds]
        for preds in job.reference]
    return Plan(
        spec=wire, timing=Timing.from_scenario(job.scenario),
        program=Program.from_scenario(job.scenario, job.trials, job.slo_p99_ms),
        loadgen_cpus=tuple(job.loadgen_cpus), loadgen_workers=job.loadgen_workers,
        remote_workers=job.remote_workers, master=job.master, final=job.final,
        target=job.target, log_dir=str(job.log_path.parent), reference=reference)


class LocustLoadGenerator:
    """Runs :mod:`harness.loadgen.driver` (Locust) in a fresh process pinned to its own CPUs."""

    def run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        work_dir = job.work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._run(job, on_event)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)  # samples live on in samples.csv.gz

    def _run(self, job: LoadJob, on_event: EventSink) -> LoadResult:
        plan_path = job.work_dir / PLAN_FILE
        plan_path.write_text(json.dumps(plan_document(job).to_json()))
        scenario = job.scenario
        budget = (DRIVER_SLACK_S + load_budget_s(scenario) * job.trials
                  + (REMOTE_CONNECT_TIMEOUT_S if job.remote_workers else 0.0))
        with job.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness.loadgen.driver", str(plan_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                env=child_env(), start_new_session=True,
            )
        overrun: LoadGeneratorError | None = None
        interrupted: KeyboardInterrupt | None = None
        try:
            self._follow(proc, budget, on_event)
        except LoadGeneratorError as exc:
            overrun = exc
        except KeyboardInterrupt as exc:
            # Stopping the driver (SIGTERM) ends its stage under way, keeping what it
            # measured; the work folder goes with this job, so it is read first.
            interrupted = exc
        finally:
            _stop(proc)
        result_path = job.work_dir / RESULT_FILE
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        if interrupted is not None:
            return _interrupted(job, result, interrupted)
        if overrun is not None or result is None \
                or proc.returncode not in (0, 1, EXIT_PARITY):
            why = str(overrun) if overrun is not None else (
                f"the load generator for {job.target} {_ended(proc.returncode)} with no "
                "result")
            partial = job.work_dir / PARTIAL_FILE
            done = json.loads(partial.read_text())["stages"] if partial.exists() else []
            if not done:
                raise LoadGeneratorError(
                    f"{why}. Its log ({job.log_path}) says:\n{log_tail(job.log_path)}")
            # What it measured before it died is kept, and the death said. Stopped for
            # overrunning its budget, it cut its stage under way and kept that too.
            cut = sum(1 for s in done if s.get("interrupted"))
            kept = f"the {len(done) - cut} stage(s) it had finished" + (
                " and what the stage it was stopped in measured" if cut else "")
            return LoadResult([read_raw_stage(job.work_dir, s) for s in done], {}, None,
                              f"{why}, during its stage {len(done) - cut + 1}; {kept} are "
                              f"kept. See {job.log_path}")
        parity = result.pop("parity", None)
        if proc.returncode == EXIT_PARITY and parity is not None:
            raise ParityError(parity_message(job.target, parity["index"], parity["problem"]))
        stages = [read_raw_stage(job.work_dir, s) for s in result.pop("stages")]
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


def _interrupted(job: LoadJob, result: dict[str, Any] | None, exc: KeyboardInterrupt
                 ) -> LoadResult:
    """What the driver measured before the run was interrupted: its finished stages and
    the interrupted one's measurement so far (marked ``interrupted``)."""
    if result is None:
        partial = job.work_dir / PARTIAL_FILE
        result = json.loads(partial.read_text()) if partial.exists() else {"stages": []}
    done = result.pop("stages", [])
    result.pop("error", None)
    parity = result.pop("parity", None)
    signum = getattr(exc, "signum", None) or signal.SIGINT
    cut = sum(1 for s in done if s.get("interrupted"))
    kept = f"the {len(done) - cut} stage(s) it had finished" + (
        " and what the interrupted one measured" if cut else "")
    error = (f"interrupted ({signal.Signals(signum).name}) during its stage "
             f"{len(done) - cut + 1}; {kept} are kept")
    return LoadResult([read_raw_stage(job.work_dir, s) for s in done], result, parity, error,
                      exc)


def _ended(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the driver by its PID: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(DRIVER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
