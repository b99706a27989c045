"""Lambda's execution model for one function, on top of :mod:`.environment`.

* One event per execution environment at a time; an idle environment is reused
  (most recently used first, as the warm pool behaves); otherwise a new one is started:
  a cold start (process start, imports, model load) up to ``concurrency`` environments.
  Beyond that an invocation is throttled (429 TooManyRequestsException).
* Idle environments are reaped after ``keepalive_s``.
* A function timeout kills the environment and reports ``Task timed out``; a crash is
  ``Runtime.ExitError``; a handled error (``/error``) keeps the environment warm.
* Every invocation gets a REPORT line (Duration, Billed Duration at 1 ms including Init
  on cold starts, as billed since August 2025, Memory Size, Max Memory Used as the real
  peak RSS, Init Duration) in the log and a JSON record in ``records_path``.
* ``Event`` invocations are queued and retried twice on function errors.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from targets.awslambda.environment import Environment, FunctionConfig, Outcome, State, tail
from targets.awslambda.sandbox import Shaper

if TYPE_CHECKING:
    from targets.awslambda.metrics import FunctionMetrics

#: Reaper period: idle environments are checked this often.
REAP_EVERY_S = 1.0
#: Delays before the two retries of a failed Event invocation (AWS: about 1 and 2 min;
#: scaled down so an emulated run finishes).
EVENT_RETRY_DELAYS_S = (1.0, 2.0)


class Throttled(Exception):
    """No environment free and the concurrency limit reached."""


@dataclass
class Invocation:
    request_id: str
    outcome: Outcome
    cold: bool
    env_id: int
    report: str
    billed_ms: int

    def log_tail(self) -> bytes:
        return tail([*self.outcome.log, f"END RequestId: {self.request_id}", self.report])


class LambdaFunction:
    def __init__(self, config: FunctionConfig, concurrency: int, keepalive_s: float,
                 records_path: Path | None, log: Callable[[str], None],
                 shaper: Shaper | None = None, metrics: FunctionMetrics | None = None) -> None:
        self.config = config
        #: CloudWatch's metrics of the function (``--metrics``), if counted.
        self.metrics = metrics
        #: How environments are shaped (CPU share, memory limit, freeze); by default not
        #: at all, every environment at the full speed of the CPUs this process may use.
        self.shaper = shaper or Shaper(config.memory_mb, len(os.sched_getaffinity(0)),
                                       mode="off", freeze=False)
        self.concurrency = concurrency
        self.keepalive_s = keepalive_s
        self.log = log
        self.envs: dict[int, Environment] = {}
        #: Every environment whose process may still run, dead ones included, so that
        #: close() waits for each process and its pipe.
        self._started: set[Environment] = set()
        self.idle: list[Environment] = []
        self.in_flight = 0
        self.throttled = 0
        self._next_id = 0
        #: Bumped by update_code(): environments of an older code version take no new
        #: invocation (as Lambda's do once UpdateFunctionCode completes).
        self.code_version = 1
        self._env_version: dict[int, int] = {}
        self._records: TextIO | None = records_path.open("a") if records_path else None
        self._events: asyncio.Queue[bytes] = asyncio.Queue()
        #: Set whenever an invocation ends: queued events wait on it for capacity.
        self._freed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._event_tasks: set[asyncio.Task[None]] = set()  # strong references until done

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._reap()))
        self._tasks.append(asyncio.create_task(self._event_worker()))

    # -- invoking -------------------------------------------------------------------
    async def invoke(self, payload: bytes, source: str, content_type: str = "application/json",
                     detailed_report: bool = False) -> Invocation:
        """Run one event; raises :class:`Throttled` when over the concurrency limit."""
        received_at = time.time()
        if self.in_flight >= self.concurrency:
            self.throttled += 1
            self._write({"ts": received_at, "source": source, "outcome": "throttled"})
            if self.metrics is not None:
                self.metrics.throttled()
            raise Throttled
        self.in_flight += 1
        if self.metrics is not None:
            self.metrics.running(self.in_flight)
        try:
            env = self._take_idle()
            cold = env is None
            if env is None:
                env = await self._spawn()
            request_id, outcome = await env.invoke(payload, content_type)
        finally:
            self.in_flight -= 1
            self._freed.set()
            if self.metrics is not None:
                self.metrics.running(self.in_flight)
        if self.metrics is not None:  # its REPORT: Invocations, Errors, Duration
            self.metrics.invoked(outcome.duration_ms, outcome.failed)
        if env.dead:
            pass
        elif self._env_version.get(env.env_id) != self.code_version:
            env.kill("code updated")  # its invocation ran the old code; no more
        else:  # free for the next event, delivered when its runtime polls
            self.idle.append(env)
        billed_ms = math.ceil(outcome.duration_ms + (outcome.init_ms or 0.0))
        invocation = Invocation(request_id, outcome, cold, env.env_id, "", billed_ms)
        record = (received_at, source)
        if detailed_report:  # the REPORT line is part of the answer (LogType=Tail)
            self._finish_record(invocation, env, record)
        else:  # after the answer is written: the memory read stays off the hot path
            asyncio.get_running_loop().call_soon(self._finish_record, invocation, env, record)
        return invocation

    def _take_idle(self) -> Environment | None:
        while self.idle:
            env = self.idle.pop()  # most recently used first
            if not env.dead:
                return env
        return None

    def _env_dead(self, env: Environment) -> None:
        self.envs.pop(env.env_id, None)
        self.shaper.weigh(len(self.envs))
        self._env_version.pop(env.env_id, None)
        if env in self.idle:
            self.idle.remove(env)

    async def _spawn(self) -> Environment:
        self._next_id += 1
        env = Environment(self._next_id, self.config, self.log, on_dead=self._env_dead,
                          enclosure=self.shaper.enclose(self._next_id))
        self.envs[env.env_id] = env
        self.shaper.weigh(len(self.envs))
        self._env_version[env.env_id] = self.code_version
        # Forget processes already gone; keep the rest for close() to wait on.
        self._started = {e for e in self._started
                         if e._exit_task is None or not e._exit_task.done()}
        self._started.add(env)
        try:
            await env.spawn()
        except BaseException:
            env.kill("could not start")
            raise
        self.log(f"[env {env.env_id}] started (pid {env.pid}), "
                 f"{len(self.envs)} environments")
        return env

    def _finish_record(self, inv: Invocation, env: Environment,
                       record: tuple[float, str]) -> None:
        memory = env.max_memory_mb()
        cpu_ms = env.cpu_since_last_ms()
        inv.report = env.report(inv.request_id, inv.outcome, memory, inv.billed_ms)
        self.log(f"END RequestId: {inv.request_id}")
        self.log(inv.report)
        received_at, source = record
        self._write({
            "ts": received_at, "finished": time.time(), "source": source,
            "request_id": inv.request_id, "env": inv.env_id, "cold": inv.cold,
            "init_ms": inv.outcome.init_ms,
            "init_cpu_ms": env.init_cpu_ms if inv.cold else None,
            "duration_ms": inv.outcome.duration_ms,
            "billed_ms": inv.billed_ms, "memory_mb": self.config.memory_mb,
            "max_memory_used_mb": memory, "outcome": inv.outcome.kind,
            "environments": len(self.envs),
            # The CPUs the environment was held to (None: unthrottled), and how long its
            # thaw took before the event (None: it was not frozen).
            "cpu_share": self.shaper.enforced_share, "thaw_ms": inv.outcome.thaw_ms,
            # CPU the environment used for it after Init (read after the answer, so the
            # runtime's polling after it counts towards the next one).
            "cpu_ms": cpu_ms,
        })

    def _write(self, record: dict[str, Any]) -> None:
        if self._records is not None and not self._records.closed:
            self._records.write(json.dumps(record) + "\n")
            self._records.flush()

    # -- asynchronous (Event) invocations ------------------------------------------
    def enqueue(self, payload: bytes) -> None:
        self._events.put_nowait(payload)

    async def _event_worker(self) -> None:
        while True:
            payload = await self._events.get()
            task = asyncio.create_task(self._run_event(payload))
            self._event_tasks.add(task)
            task.add_done_callback(self._event_tasks.discard)

    async def _run_event(self, payload: bytes) -> None:
        for delay in (0.0, *EVENT_RETRY_DELAYS_S):
            await asyncio.sleep(delay)
            # Queued events wait for capacity: they are never throttled, nor counted so.
            while self.in_flight >= self.concurrency:
                self._freed.clear()
                await self._freed.wait()
            invocation = await self.invoke(payload, "event")
            if not invocation.outcome.failed:
                return

    # -- housekeeping --------------------------------------------------------------
    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            now = time.monotonic()
            for env in list(self.idle):
                if env.state is State.IDLE and now - env.idle_since > self.keepalive_s:
                    env.kill(f"idle for {self.keepalive_s:.0f} s")  # on_dead forgets it

    def reset(self) -> int:
        """Kill every environment (the next invocations are cold starts)."""
        envs = list(self.envs.values())
        for env in envs:
            env.kill("reset")
        self.envs.clear()
        self.idle.clear()
        return len(envs)

    def update_code(self) -> int:
        """A new code version (the bundle reloaded from its files): idle environments
        are retired now, busy ones when their invocation ends; every later invocation
        runs in a new environment. Returns the new version."""
        self.code_version += 1
        for env in list(self.idle):
            env.kill("code updated")  # on_dead forgets it
        self.idle.clear()
        return self.code_version

    def stats(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for env in self.envs.values():
            states[env.state.value] = states.get(env.state.value, 0) + 1
        return {"function": self.config.name, "environments": len(self.envs),
                "states": states, "in_flight": self.in_flight, "throttled": self.throttled,
                "concurrency": self.concurrency, "memory_mb": self.config.memory_mb,
                "code_version": self.code_version, "sandbox": self.shaper.describe(),
                "pids": [e.pid for e in self.envs.values() if e.pid]}

    async def close(self) -> None:
        for task in [*self._tasks, *self._event_tasks]:
            task.cancel()
        self.reset()
        await asyncio.gather(*(env.wait_closed() for env in self._started))
        self._started.clear()
        self.shaper.close()
        await asyncio.sleep(0)  # let records scheduled with call_soon be written
        if self._records is not None:
            self._records.close()
