"""What every kind of stage is made of, below the stage loop (:mod:`harness.loadgen.stages`)
and the timeline stage (:mod:`harness.loadgen.timeline`), which both use it: the engine's
protocol, the context a stage runs in, progress events, the watch on the target's
processes, the warm-up, the cool-down and drain, and the samples file.

It knows nothing of Locust or of threads: what generates the load is an :class:`Engine`
(Locust's runner in :mod:`harness.loadgen.driver`, the application's own handler threads in
:mod:`harness.loadgen.embedded`).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.loadgen.protocol import StageReport, Timing
from reports.stageblocks import LocustCrossCheck

#: How long all of a stage's users may take to start before the stage is failed.
SPAWN_TIMEOUT_S = 60.0
#: How often the target's main processes are checked for life during a stage.
WATCH_INTERVAL_S = 0.1
#: After SIGTERM (the orchestrator stopping the run), how long the interrupted stage waits
#: for the requests still in flight: the orchestrator kills the driver soon after.
INTERRUPTED_DRAIN_S = 1.0
#: After SIGTERM, the driver exits by itself within this long, whatever it is doing
#: (within harness.loadgen.DRIVER_STOP_GRACE_S, after which the orchestrator kills it).
HARD_EXIT_S = 8


class StageError(RuntimeError):
    """A stage could not run as planned (e.g. not every user started)."""


class StageInterrupted(StageError):
    """SIGTERM: the run is being stopped. The stage under way ended at once, its
    measurement so far kept (marked ``interrupted``) when it had begun measuring."""

    def __init__(self) -> None:
        super().__init__("interrupted: the load generator was stopped (SIGTERM)")


def emit(event: str, **fields: Any) -> None:
    """One progress line for the orchestrator (harness.loadgen.launch reads stdout)."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Waitable(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...
    def set(self) -> None: ...
    def is_set(self) -> bool: ...


class Task(Protocol):
    def kill(self) -> None: ...


class Engine(Protocol):
    """What generates the load, as the stage loop drives it."""

    #: Keep the engine's own statistics per window as a cross-check of ours.
    crosscheck: bool

    def start(self, users: int, all_at_once: bool = False) -> None:
        """Have ``users`` closed-loop users sending (or, with an open loop set on the
        control, run its schedule): more are started, extra ones finish their request
        and stop. Returns at once; :attr:`user_count` says how many run."""

    @property
    def user_count(self) -> int: ...

    def stop(self) -> None:
        """Stop every user (after the drain: nothing is in flight)."""

    def sleep(self, seconds: float) -> None: ...

    def event(self) -> Waitable: ...

    def spawn(self, fn: Callable[[], None]) -> Task: ...

    def open_loop(self, rate: float, arrival: str, max_inflight: int, seed: int) -> Any:
        """The open-loop schedule of one stage (set on the control before start())."""

    def reserve(self, users: int) -> None:
        """Get ready to run up to ``users`` at once (a timeline's largest segment)."""

    def graceful(self, timeout_s: float) -> Any:
        """A context in which users told to stop finish the request they are in."""

    # The engine's own statistics, a cross-check (only read when ``crosscheck``).
    def reset_stats(self) -> None: ...

    def window_stats(self) -> Any: ...

    def merged_stats(self, windows: list[Any], span_s: float) -> LocustCrossCheck: ...

    def total_stats(self, span_s: float) -> LocustCrossCheck: ...


class Sleeper(Protocol):
    """Anything that can wait without blocking its load: an :class:`Engine`, or gevent."""

    def sleep(self, seconds: float) -> None: ...


def wait_until(engine: Sleeper, condition: Callable[[], bool], timeout_s: float,
               step_s: float = 0.005) -> bool:
    """Whether ``condition`` came true within ``timeout_s``, checked every ``step_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        engine.sleep(step_s)
    return True


class StageContext:
    """What a stage runs with: the engine, its control, recorder and meter, the timing,
    the results so far and the stop flag (set on SIGTERM). :class:`harness.loadgen.stages.
    StageRunner` adds the kinds of stage."""

    def __init__(self, engine: Engine, control: Any, recorder: Any, meter: Any,
                 out_dir: Path, target_cpus: int, timing: Timing) -> None:
        self.engine, self.control = engine, control
        self.recorder, self.meter, self.out_dir = recorder, meter, out_dir
        self.target_cpus = target_cpus
        self.timing = timing
        self.results: list[StageReport] = []
        self.open_stages: dict[int, int] = {}
        #: The engine's SIGTERM handler, kept for as long as the stages run and after.
        self.signal_handler: Any = None
        #: With workers: the load generator's CPUs, which all of them share.
        self.loadgen_cores = 1
        #: The target's metrics (the load spec's metrics_url, run --metrics), scraped at
        #: each stage's edges and every scrape_interval_s; None: metrics off.
        self.metrics_url: str | None = None
        #: Set on SIGTERM: the stage under way ends at its next wait, keeping what it
        #: measured, and no further stage starts (see StageInterrupted).
        self.stop = engine.event()
        self._alarm = signal.alarm

    def reports(self) -> list[dict[str, Any]]:
        """The stages so far, as ``partial.json`` and ``result.json`` hold them."""
        return [stage.to_json() for stage in self.results]

    def terminate(self) -> None:
        """SIGTERM: from the orchestrator stopping the run, or from the kernel when the
        orchestrator died (die_with_parent). The stage under way ends and is written;
        should anything keep this process from exiting soon after (a stage blocked in a
        call that does not yield), SIGALRM's default action ends it, so no orphaned load
        generator goes on sending."""
        self.stop.set()
        self._alarm(HARD_EXIT_S)


class Watch:
    """Checks the target's main processes every WATCH_INTERVAL_S during a stage and
    notes when it first found one dead (none to watch in-process)."""

    def __init__(self, engine: Engine, meter: Any) -> None:
        self.engine, self.meter = engine, meter
        self.died_at: float | None = None
        self.dead: list[int] = []
        self._task = engine.spawn(self._run) if getattr(meter, "watch_pids", None) else None

    def _run(self) -> None:
        while self.died_at is None:
            dead = self.meter.dead()
            if dead:
                self.died_at, self.dead = time.time(), dead
                emit("target_died", pids=dead)
                return
            self.engine.sleep(WATCH_INTERVAL_S)

    def stop(self) -> None:
        if self._task is not None:
            self._task.kill()


def spawn_and_warm_up(ctx: StageContext, users: int, where: dict[str, Any], watch: Watch,
                      what: str = "the concurrency") -> tuple[float, bool]:
    """Start ``users`` and warm up: ``warmup_s``, and until every user has had an answer
    (a user whose first request is still waiting, a cold start or a slow first
    connection, is not at steady state yet), at most ``warmup_max_s``. Returns the
    warm-up's length and whether every user had its answer."""
    engine, control, t, stop = ctx.engine, ctx.control, ctx.timing, ctx.stop
    # Locust warns above 100 users/s; larger stages take an extra second to spawn.
    engine.start(users)
    if not wait_until(engine, lambda: engine.user_count >= users or stop.is_set(),
                      SPAWN_TIMEOUT_S):
        engine.stop()
        raise StageError(f"only {engine.user_count} of {users} users started within "
                         f"{SPAWN_TIMEOUT_S:.0f} s; lower {what} or give the load "
                         "generator more CPUs")
    if stop.is_set():  # nothing measured yet
        engine.stop()
        raise StageInterrupted
    emit("stage", phase="warmup", **where)
    started = time.monotonic()
    stop.wait(t.warmup_s)
    warmed = wait_until(engine, lambda: control.settled() >= users
                        or watch.died_at is not None or stop.is_set(),
                        max(0.0, t.warmup_max_s - t.warmup_s), step_s=0.02) \
        and control.settled() >= users
    if stop.is_set():  # SIGTERM before anything was measured: nothing to keep
        engine.stop()
        raise StageInterrupted
    return time.monotonic() - started, warmed


def cool_down_and_drain(ctx: StageContext, where: dict[str, Any]) -> tuple[bool, list[float]]:
    """The cool-down (load goes on, so requests sent in the window finish under it),
    then no new sends and a wait for those in flight. Returns whether everything was
    answered, and the send times of what was not by the drain timeout, each recorded as
    a failure. After SIGTERM (``ctx.stop``) there is no cool-down and the drain waits
    at most INTERRUPTED_DRAIN_S."""
    t, control, recorder, stop = ctx.timing, ctx.control, ctx.recorder, ctx.stop
    engine = ctx.engine
    emit("stage", phase="cooldown", **where)
    stop.wait(t.cooldown_s)  # SIGTERM: no cool-down, and a short drain
    control.draining = True
    drained = wait_until(engine, lambda: control.drained() or stop.is_set(),
                         t.drain_timeout_s + float(getattr(control, "drain_margin_s", 0.0))
                         ) and control.drained()
    if not drained and stop.is_set():
        drained = wait_until(engine, control.drained, INTERRUPTED_DRAIN_S)
    why = ("no answer before the run was interrupted" if stop.is_set() and not drained
           else f"no answer within the {t.drain_timeout_s:.0f} s drain timeout")
    now = time.time()
    # What is in flight, then closed: an answer arriving from here on would count a
    # second time, beside its failure below (an engine with threads drops from the
    # in-flight list what they recorded in between).
    unanswered = recorder.close(control.unanswered())
    for sent_at in unanswered:
        recorder.record_unanswered(sent_at, (now - sent_at) * 1000.0, why)
    return drained, unanswered


def save_samples(ctx: StageContext, index: int, samples: Any) -> str:
    """The stage's raw samples, beside its record; returns the file's name."""
    name = f"stage-{index}.npz"
    np.savez(ctx.out_dir / name, **samples.to_npz())
    return name
