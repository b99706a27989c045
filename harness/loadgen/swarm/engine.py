"""Locust as the stage loop's engine (:class:`harness.loadgen.stagekit.Engine`): users are
greenlets, waits are gevent's, and Locust's own statistics are kept per window as a
cross-check of the harness's raw samples. Imported only inside a Locust process (the
driver's local run and the master), so gevent and Locust are imported at its top."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

import gevent
from gevent.event import Event
from locust.stats import StatsEntry

from harness.loadgen.stages import StageRunner
from harness.loadgen.swarm.openloop import OpenLoop
from reports.stageblocks import LocustCrossCheck


def locust_snapshot(total: Any, window_s: float) -> LocustCrossCheck:
    """Locust's figures for the window, with successes counted as deploybench counts them."""
    ok = total.num_requests - total.num_failures
    n = total.num_requests

    def percentile(p: float) -> float | None:
        return total.get_response_time_percentile(p) if n else None

    return {
        "requests": n,
        "failures": total.num_failures,
        "rps": ok / window_s if window_s > 0 else None,
        "avg_ms": total.avg_response_time if n else None,
        # Locust rounds these (whole ms below 100 ms): a cross-check, not the source.
        "p50_ms": percentile(0.5),
        "p99_ms": percentile(0.99),
    }


class LocustEngine:
    """Locust's runner as the stage loop's :class:`harness.loadgen.stagekit.Engine`: users are
    greenlets, waits are gevent's."""

    def __init__(self, env: Any, runner: Any, crosscheck: bool = True) -> None:
        self.env, self.runner = env, runner
        #: Locust's own figures per window, as a cross-check (not with workers: the
        #: master's copy lags their periodic reports).
        self.crosscheck = crosscheck
        #: The users last asked for (Locust's own count lags, with users still stopping).
        self._users = 0

    def start(self, users: int, all_at_once: bool = False) -> None:
        if all_at_once:
            # Locust's dispatcher adds (or stops) spawn_rate users per step, so a rate of
            # the whole difference makes it one step.
            self.runner.start(users, spawn_rate=max(1, abs(users - self._users)))
        else:
            # Locust warns above 100 users/s; larger stages take an extra second to spawn.
            self.runner.start(users, spawn_rate=min(users, 100))
        self._users = users

    def reserve(self, users: int) -> None:
        """Nothing to prepare: a greenlet costs nothing to start."""

    @property
    def user_count(self) -> int:
        return int(self.runner.user_count)

    def stop(self) -> None:
        self.runner.stop()
        self._users = 0

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def event(self) -> Any:
        return Event()

    def spawn(self, fn: Callable[[], None]) -> Any:
        return gevent.spawn(fn)

    def open_loop(self, rate: float, arrival: str, max_inflight: int, seed: int) -> Any:
        return OpenLoop(rate, arrival, max_inflight, seed)

    @contextlib.contextmanager
    def graceful(self, timeout_s: float) -> Iterator[None]:
        # Locust kills stopped users mid-request unless told to wait for them.
        before = self.env.stop_timeout
        self.env.stop_timeout = timeout_s
        try:
            yield
        finally:
            self.env.stop_timeout = before

    def reset_stats(self) -> None:
        self.env.stats.reset_all()

    def window_stats(self) -> Any:
        return self.env.stats.total.serialize()

    def merged_stats(self, windows: list[Any], span_s: float) -> LocustCrossCheck:
        """Locust's own figures over the kept windows (its histograms merge exactly)."""
        if not windows:
            return {}
        total = StatsEntry.unserialize(windows[0], self.env.stats)
        for data in windows[1:]:
            total.extend(StatsEntry.unserialize(data, self.env.stats))
        return locust_snapshot(total, span_s)

    def total_stats(self, span_s: float) -> LocustCrossCheck:
        return locust_snapshot(self.env.stats.total, span_s)


def on_sigterm(stages: StageRunner) -> Any:
    """SIGTERM ends the stage under way (gevent's handler runs in the event loop); keep
    the returned handle while the stages run."""
    return gevent.signal_handler(signal.SIGTERM, stages.terminate)
