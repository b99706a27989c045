"""One execution environment: an ``awslambdaric`` process and the Runtime API it polls.

States: STARTING (spawned, before its first ``GET /next``) -> IDLE (blocked in ``/next``)
-> BUSY (an event delivered) -> IDLE ... and DEAD from anywhere (init error, crash,
timeout, reaped). One event at a time, ever: Lambda's execution model.

What the Runtime API must get right for awslambdaric 4.x (from the research):
``/next`` only ever answers 200 (anything else kills the runtime) and always sends
Content-Type (without it awslambdaric segfaults); connections are kept alive and
TCP_NODELAY is set (:mod:`.httpserver`); ``/init/error`` answers exactly 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
import os
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from targets.awslambda import httpserver
from targets.awslambda.httpserver import Request, Response, json_response
from targets.process import PARENT_ENV

RUNTIME_PREFIX = "/2018-06-01/runtime"
HANDLER = "targets.awslambda.handler.handler"
#: Lambda's synchronous response limit (the RIE's interop.MaxPayloadSize).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
#: AWS's LogType=Tail returns the last 4 KB of the invocation's log.
LOG_TAIL_BYTES = 4096
SOURCE_ROOT = Path(__file__).resolve().parents[2]


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    bundle: str
    memory_mb: int
    timeout_s: float
    init_timeout_s: float
    region: str = "us-east-1"
    account: str = "123456789012"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.name}"


@dataclass
class Outcome:
    """How an invocation ended, and what Lambda's REPORT line says about it."""

    #: "ok", "function_error", "timeout", "crash" or "init_error".
    kind: str
    body: bytes
    content_type: str
    duration_ms: float
    init_ms: float | None = None
    log: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.kind != "ok"


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class Environment:
    def __init__(self, env_id: int, config: FunctionConfig, log: Callable[[str], None]) -> None:
        self.env_id = env_id
        self.config = config
        self.emit = log
        self.state = State.STARTING
        self.process: asyncio.subprocess.Process | None = None
        self.server: asyncio.Server | None = None
        self.spawned_at = time.perf_counter()
        self.init_ms: float | None = None
        self.idle_since = time.monotonic()
        self.invocations = 0
        self._init_error: bytes | None = None
        #: Resolved with the next event for the runtime's pending ``/next`` (None: stop).
        self._waiting: asyncio.Future[tuple[str, bytes, str, float] | None] | None = None
        self._current: tuple[str, asyncio.Future[Outcome]] | None = None
        self._delivered_at = 0.0
        self._log: deque[str] = deque(maxlen=200)
        self._log_from = 0
        self._timer: asyncio.TimerHandle | None = None
        self._exit_task: asyncio.Task[None] | None = None
        self._log_task: asyncio.Task[None] | None = None
        #: Set while the runtime waits in ``GET /next`` (or once the environment is dead):
        #: an event can be delivered only then. Between posting a response and polling
        #: again the runtime is still busy.
        self._polling = asyncio.Event()

    @property
    def dead(self) -> bool:
        return self.state is State.DEAD

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    # -- lifecycle ------------------------------------------------------------------
    async def spawn(self) -> None:
        self.server = await httpserver.start(self._route, "127.0.0.1", 0, MAX_RESPONSE_BYTES)
        port = httpserver.bound_port(self.server)
        cfg = self.config
        stream = f"{dt.datetime.now(dt.UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        env = {
            **os.environ, **cfg.extra_env,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "_HANDLER": HANDLER,
            "AWS_REGION": cfg.region, "AWS_DEFAULT_REGION": cfg.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "LAMBDA_TASK_ROOT": str(SOURCE_ROOT),
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",  # log lines reach us as they are written
            # One torch thread per environment: environments share the target CPUs.
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            PARENT_ENV: str(os.getpid()),
        }
        env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)  # would switch to Managed Instances mode
        self.spawned_at = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "awslambdaric", HANDLER, env=env, cwd=SOURCE_ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        self._log_task = asyncio.create_task(self._read_log())
        self._exit_task = asyncio.create_task(self._watch_exit())
        self._timer = asyncio.get_running_loop().call_later(
            cfg.init_timeout_s, self._init_timed_out)

    def kill(self, reason: str) -> None:
        """SIGKILL the environment's process group (its own PID) and mark it dead."""
        if self.state is State.DEAD:
            return
        self.state = State.DEAD
        self.emit(f"[env {self.env_id}] stopped: {reason}")
        if self._timer:
            self._timer.cancel()
        if self.process and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.server:
            self.server.close()
        if self._waiting and not self._waiting.done():
            self._waiting.set_result(None)  # answer the pending /next; the process is gone
        self._polling.set()  # wake an invocation waiting for this environment

    async def wait_closed(self, timeout_s: float = 5.0) -> None:
        """After :meth:`kill`: wait for the process and its log pipe to be gone."""
        tasks = [t for t in (self._exit_task, self._log_task) if t is not None]
        if tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True),
                                       timeout_s)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    def max_memory_mb(self) -> float | None:
        """Peak resident memory of the runtime process so far (VmHWM): Max Memory Used."""
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    # -- invoking -------------------------------------------------------------------
    async def invoke(self, payload: bytes, content_type: str = "application/json",
                     request_id: str | None = None) -> tuple[str, Outcome]:
        """Deliver one event (waiting for init on a cold environment); its outcome."""
        assert self._current is None, "one event at a time"
        request_id = request_id or str(uuid.uuid4())
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._current = (request_id, future)
        cold = self.state is State.STARTING
        await self._polling.wait()
        if self.dead:  # it may have died while this waited
            self._fail_starting(future, cold)
        else:
            self._deliver(request_id, payload, content_type)
        try:
            outcome = await future
        finally:
            self._current = None
        if cold:
            outcome.init_ms = self.init_ms
        self.invocations += 1
        return request_id, outcome

    def _deliver(self, request_id: str, payload: bytes, content_type: str) -> None:
        assert self._waiting is not None
        assert not self._waiting.done()
        self._polling.clear()
        deadline_ms = int(time.time() * 1000 + self.config.timeout_s * 1000)
        self.state = State.BUSY
        self._log_from = len(self._log)
        start = f"START RequestId: {request_id} Version: $LATEST"
        self._log.append(start)
        self.emit(start)
        self._delivered_at = time.perf_counter()
        self._waiting.set_result((request_id, payload, content_type, deadline_ms))
        self._timer = asyncio.get_running_loop().call_later(
            self.config.timeout_s, self._timed_out, request_id)

    def _finish(self, request_id: str, kind: str, body: bytes, content_type: str) -> bool:
        if self._current is None or self._current[0] != request_id or self._current[1].done():
            return False
        if self._timer:
            self._timer.cancel()
        duration_ms = (time.perf_counter() - self._delivered_at) * 1000.0
        log = list(self._log)[self._log_from:]
        self._current[1].set_result(Outcome(kind, body, content_type, duration_ms, log=log))
        return True

    def _fail_starting(self, future: asyncio.Future[Outcome], cold: bool) -> None:
        """The environment died before this event could be delivered."""
        code = self.process.returncode if self.process else None
        if cold:
            body = self._init_error or error_body(
                "Runtime.ExitError", f"Runtime exited with error: exit status {code}")
            kind = "init_error"
        else:
            body = error_body("Runtime.ExitError",
                              f"Runtime exited with error: exit status {code}")
            kind = "crash"
        elapsed = (time.perf_counter() - self.spawned_at) * 1000.0
        future.set_result(Outcome(kind, body, "application/json", 0.0,
                                  init_ms=elapsed if cold else None, log=list(self._log)))

    def _timed_out(self, request_id: str) -> None:
        message = (f"RequestId: {request_id} Error: Task timed out after "
                   f"{self.config.timeout_s:.2f} seconds")
        self._finish(request_id, "timeout", error_body("Sandbox.Timedout", message),
                     "application/json")
        self.kill("function timeout")

    def _init_timed_out(self) -> None:
        if self.state is not State.STARTING:
            return
        self._init_error = error_body(
            "Sandbox.Timedout", f"INIT phase timed out after {self.config.init_timeout_s:.2f} "
                                "seconds")
        self.kill("init timeout")

    async def _watch_exit(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        if (self._current is not None and not self._current[1].done()
                and self.state is State.BUSY):
            how = f"signal: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            self._finish(self._current[0], "crash", error_body(
                "Runtime.ExitError",
                f"RequestId: {self._current[0]} Error: Runtime exited with error: {how}"),
                "application/json")
        self.kill(f"runtime exited ({code})")

    async def _read_log(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self._log.append(line)
            self.emit(f"[env {self.env_id}] {line}")

    # -- the Runtime API ------------------------------------------------------------
    async def _route(self, request: Request) -> Response:
        path = request.path
        if not path.startswith(RUNTIME_PREFIX):
            return json_response(404, error_body("NotFound", f"no route {path}"))
        path = path[len(RUNTIME_PREFIX):]
        if request.method == "GET" and path == "/invocation/next":
            return await self._next()
        if request.method == "POST" and path.startswith("/invocation/"):
            request_id, _, what = path[len("/invocation/"):].partition("/")
            if what in ("response", "error"):
                kind = "ok" if what == "response" else "function_error"
                content_type = request.headers.get("content-type", "application/json")
                if not self._finish(request_id, kind, request.body, content_type):
                    return json_response(400, error_body("InvalidRequestID",
                                                         f"unknown request {request_id}"))
                return json_response(202, b'{"status":"OK"}')
        if request.method == "POST" and path == "/init/error":
            self._init_error = request.body or error_body("Runtime.Unknown", "init failed")
            return json_response(202, b'{"status":"OK"}')
        return json_response(404, error_body("NotFound", f"no route {request.path}"))

    async def _next(self) -> Response:
        if self.state is State.STARTING:
            self.init_ms = (time.perf_counter() - self.spawned_at) * 1000.0
            if self._timer:
                self._timer.cancel()
            self.emit(f"[env {self.env_id}] ready: init {self.init_ms:.1f} ms")
        if self.state is State.DEAD:
            return json_response(500, error_body("Runtime.Stopped", "environment stopped"))
        self.state = State.IDLE
        self.idle_since = time.monotonic()
        self._waiting = asyncio.get_running_loop().create_future()
        self._polling.set()
        event = await self._waiting
        if event is None:  # killed while waiting: the runtime process is gone already
            return json_response(500, error_body("Runtime.Stopped", "environment stopped"))
        request_id, payload, content_type, deadline_ms = event
        return Response(200, payload, [
            ("Lambda-Runtime-Aws-Request-Id", request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", self.config.arn),
            ("Content-Type", content_type),
        ])

    def report(self, request_id: str, outcome: Outcome, max_memory_mb: float | None,
               billed_ms: int) -> str:
        """Lambda's REPORT line (cloud field order: Init Duration last, cold starts only)."""
        line = (f"REPORT RequestId: {request_id}\tDuration: {outcome.duration_ms:.2f} ms\t"
                f"Billed Duration: {billed_ms} ms\tMemory Size: {self.config.memory_mb} MB\t"
                f"Max Memory Used: {max_memory_mb or 0:.0f} MB\t")
        if outcome.init_ms is not None:
            line += f"Init Duration: {outcome.init_ms:.2f} ms\t"
        return line

    def __repr__(self) -> str:
        return f"Environment({self.env_id}, {self.state.value}, pid={self.pid})"


def tail(lines: list[str], limit: int = LOG_TAIL_BYTES) -> bytes:
    """The last ``limit`` bytes of an invocation's log, as LogType=Tail returns them."""
    data = ("\n".join(lines) + "\n").encode()
    return data[-limit:]


