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
from targets.awslambda.proc import process_cpu_ms
from targets.awslambda.sandbox import (
    FREEZE_AFTER_S,
    Enclosure,
    exit_description,
    launch_command,
)
from targets.runtimes.process import PARENT_ENV

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


#: How often a starting environment's Init time is checked against the limit.
INIT_CHECK_S = 0.25


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    memory_mb: int
    timeout_s: float
    #: Lambda's 10 s Init cap, applied to the environment's *CPU* time: here environments
    #: share the target CPUs, so ten of them starting at once each take ten times longer
    #: by the wall clock than one would on Lambda, where each has its own. The wall clock
    #: is capped too, at ``init_timeout_s * init_wall_factor``, for an Init that hangs.
    init_timeout_s: float
    init_wall_factor: float = 10.0
    region: str = "us-east-1"
    account: str = "123456789012"
    extra_env: dict[str, str] = field(default_factory=dict)
    #: ``MODULE.FUNCTION`` the runtime calls, importable from ``code_dir`` (None: this
    #: deploybench's source, which holds the default handler).
    handler: str = HANDLER
    code_dir: Path | None = None
    #: An idle environment is frozen after this long (sandbox.FREEZE_AFTER_S).
    freeze_after_s: float = FREEZE_AFTER_S
    #: OMP/MKL threads of the runtime (sandbox.Shaper.torch_threads: the vCPUs AWS shows
    #: the memory size, where its CPU share is enforced; else one).
    torch_threads: int = 1

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
    #: How long thawing the frozen environment took before the event was delivered.
    thaw_ms: float | None = None

    @property
    def failed(self) -> bool:
        return self.kind != "ok"


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


@dataclass
class _Assigned:
    """The event an environment has been given: delivered to the runtime, or waiting
    for its first ``/next`` (a cold start)."""

    request_id: str
    payload: bytes
    content_type: str
    future: asyncio.Future[Outcome]
    cold: bool
    delivered_at: float | None = None
    log_from: int = 0
    thaw_ms: float | None = None


class Environment:
    """One runtime process and its Runtime API.

    An environment may be given its next event as soon as it has answered the last one;
    the event is delivered when the runtime polls ``/next`` again (a fraction of a
    millisecond later; a runtime that does not poll within the function timeout is
    killed). ``on_dead`` is called once, when it is killed or its process exits; an event
    it was given is then answered (crash, timeout or init error), never left waiting.
    """

    def __init__(self, env_id: int, config: FunctionConfig, log: Callable[[str], None],
                 on_dead: Callable[[Environment], None] = lambda env: None,
                 enclosure: Enclosure | None = None) -> None:
        self.env_id = env_id
        self.config = config
        #: Its cgroups (CPU quota, memory limit, freezer; :mod:`.sandbox`), if any.
        self.enclosure = enclosure or Enclosure(None, {}, "none")
        self.emit = log
        self.on_dead = on_dead
        self.state = State.STARTING
        self.process: asyncio.subprocess.Process | None = None
        self.server: asyncio.Server | None = None
        self.spawned_at = time.perf_counter()
        self.init_ms: float | None = None
        #: CPU time the runtime process spent in Init: what Init would take with a CPU
        #: of its own, as on Lambda.
        self.init_cpu_ms: float | None = None
        self._cpu_mark: float | None = None  # CPU time when last read
        self.idle_since = time.monotonic()
        self._init_error: bytes | None = None
        #: Resolved with the next event for the runtime's pending ``/next`` (None: stop).
        self._waiting: asyncio.Future[_Assigned | None] | None = None
        self._current: _Assigned | None = None
        self._log: deque[str] = deque(maxlen=200)
        #: Lines ever appended to ``_log``: slicing by it survives the deque's rotation.
        self._log_total = 0
        self._peak_mb: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._exit_task: asyncio.Task[None] | None = None
        self._log_task: asyncio.Task[None] | None = None
        #: Set while the runtime waits in ``/next`` (or once dead): an event can be
        #: delivered only then.
        self._polling = asyncio.Event()

    @property
    def dead(self) -> bool:
        return self.state is State.DEAD

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    # -- lifecycle ------------------------------------------------------------------
    async def spawn(self) -> None:
        # The Runtime API takes bodies past Lambda's limit, to answer them as Lambda does.
        self.server = await httpserver.start(self._route, "127.0.0.1", 0,
                                             4 * MAX_RESPONSE_BYTES)
        port = httpserver.bound_port(self.server)
        cfg = self.config
        stream = f"{dt.datetime.now(dt.UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        task_root = cfg.code_dir or SOURCE_ROOT
        path = [str(p) for p in (cfg.code_dir, SOURCE_ROOT) if p is not None]
        env = {
            **os.environ, **cfg.extra_env,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "_HANDLER": cfg.handler,
            "AWS_REGION": cfg.region, "AWS_DEFAULT_REGION": cfg.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "LAMBDA_TASK_ROOT": str(task_root),
            "PYTHONPATH": os.pathsep.join([*path, *filter(None, [os.environ.get("PYTHONPATH")])]),
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",  # log lines reach us as they are written
            # As many torch threads as AWS shows the size vCPUs (one up to 1,769 MB), held
            # to its CPU share by the quota; one where nothing holds it (Shaper).
            "OMP_NUM_THREADS": str(cfg.torch_threads), "MKL_NUM_THREADS": str(cfg.torch_threads),
            PARENT_ENV: str(os.getpid()),
        }
        env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)  # would switch to Managed Instances mode
        self.spawned_at = time.perf_counter()
        # Through a shell that joins the environment's cgroups before Python starts, so
        # its whole Init runs throttled and charged (sandbox.launch_command).
        argv = launch_command(self.enclosure.join,
                              [sys.executable, "-m", "awslambdaric", cfg.handler])
        self.process = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=task_root,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        self._log_task = asyncio.create_task(self._read_log())
        self._exit_task = asyncio.create_task(self._watch_exit())
        self._timer = asyncio.get_running_loop().call_later(INIT_CHECK_S, self._check_init)

    def kill(self, reason: str, kind: str = "crash", error: bytes | None = None) -> None:
        """SIGKILL the environment's process group (its own PID) and mark it dead.

        An event it was given is answered with ``kind``/``error`` (by default a crash:
        ``Runtime.ExitError``), so no caller is ever left waiting.
        """
        if self.state is State.DEAD:
            return
        self._peak_mb = self.max_memory_mb()  # Max Memory Used, before the process goes
        current = self._current
        if current is not None and not current.future.done():
            if error is None:
                what = "Runtime exited" if current.delivered_at else "Runtime exited during Init"
                detail = reason if reason.startswith("Runtime exited") else f"{what}: {reason}"
                error = error_body("Runtime.ExitError", f"RequestId: {current.request_id} "
                                                        f"Error: {detail}")
                kind = "init_error" if current.cold and not current.delivered_at else kind
            self._complete(current, kind, error, "application/json")
        self.state = State.DEAD
        self.emit(f"[env {self.env_id}] stopped: {reason}")
        if self._timer:
            self._timer.cancel()
        if self.process is not None:
            # The whole group, by the leader's PID: awslambdaric and anything it started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            # A frozen process dies only once thawed (cgroup v1's freezer; SIGCONT after a
            # SIGSTOP is harmless).
            self.enclosure.thaw(self.process.pid)
        if self.server:
            self.server.close()
        if self._waiting and not self._waiting.done():
            self._waiting.set_result(None)  # answer the pending /next; the process is gone
        self._polling.set()
        self.on_dead(self)

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
        """Max Memory Used: the larger of the environment's memory cgroup peak (what it
        was charged, page cache included) and the runtime's peak resident memory (VmHWM,
        which counts shared libraries another process loaded first). Once the process is
        gone, the last value read."""
        found = [v for v in (self._peak_mb, self.enclosure.peak_mb()) if v is not None]
        if self.pid is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        found.append(int(line.split()[1]) / 1024)
                        break
        self._peak_mb = max(found, default=None)
        return self._peak_mb

    # -- invoking -------------------------------------------------------------------
    async def invoke(self, payload: bytes, content_type: str = "application/json",
                     request_id: str | None = None) -> tuple[str, Outcome]:
        """Run one event: when the runtime next polls (after Init on a new environment)."""
        assert self._current is None, "one event at a time"
        assert not self.dead, "environment is dead"
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        current = _Assigned(request_id or str(uuid.uuid4()), payload, content_type, future,
                            cold=self.state is State.STARTING)
        self._current = current
        try:
            if not self._polling.is_set():
                if current.cold:  # Init has its own limit (_check_init)
                    await self._polling.wait()
                else:
                    try:
                        await asyncio.wait_for(self._polling.wait(), self.config.timeout_s)
                    except TimeoutError:
                        self.kill("the runtime did not ask for its next event")
            if not future.done():  # not answered by a kill while it waited
                self._deliver(current)
            outcome = await future
        finally:
            if self._current is current:  # cancelled: nobody else will clear it
                self._current = None
        if current.cold and outcome.init_ms is None:
            outcome.init_ms = self.init_ms
        return current.request_id, outcome

    def _deliver(self, current: _Assigned) -> None:
        assert self._waiting is not None
        assert not self._waiting.done()
        self._polling.clear()
        self.state = State.BUSY
        current.log_from = self._log_total
        current.thaw_ms = self.enclosure.thaw(self.pid)
        self._append_log(f"START RequestId: {current.request_id} Version: $LATEST")
        current.delivered_at = time.perf_counter()
        self._waiting.set_result(current)
        self._timer = asyncio.get_running_loop().call_later(
            self.config.timeout_s, self._timed_out, current)

    def _complete(self, current: _Assigned, kind: str, body: bytes, content_type: str) -> None:
        if self._timer and current.delivered_at is not None:
            self._timer.cancel()
        now = time.perf_counter()
        duration_ms = (now - current.delivered_at) * 1000.0 if current.delivered_at else 0.0
        init_ms = None
        if current.cold and self.init_ms is None:  # died or failed during Init
            init_ms = (now - self.spawned_at) * 1000.0
        lines = list(self._log)
        log = lines[max(0, len(lines) - (self._log_total - current.log_from)):] \
            if current.delivered_at else []
        if self._current is current:
            self._current = None  # free before anyone can see the runtime poll again
        current.future.set_result(Outcome(kind, body, content_type, duration_ms, init_ms, log,
                                          current.thaw_ms))

    def _timed_out(self, current: _Assigned) -> None:
        if current.future.done():
            return
        message = (f"RequestId: {current.request_id} Error: Task timed out after "
                   f"{self.config.timeout_s:.2f} seconds")
        self.kill("function timeout", "timeout", error_body("Sandbox.Timedout", message))

    def cpu_since_last_ms(self) -> float | None:
        """CPU time used since the last call (the first: since Init ended)."""
        now = process_cpu_ms(self.pid) if self.pid is not None else None
        if now is None or self._cpu_mark is None:
            return None
        used, self._cpu_mark = now - self._cpu_mark, now
        return used if used >= 0 else None  # a thread ended, taking its time with it

    def _cpu_ms(self) -> float | None:
        """CPU time (user + system) the runtime process has used so far."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")

    def _check_init(self) -> None:
        if self.state is not State.STARTING:
            return
        cfg = self.config
        cpu_ms = self._cpu_ms() or 0.0
        wall_s = time.perf_counter() - self.spawned_at
        if cpu_ms / 1000.0 > cfg.init_timeout_s or \
                wall_s > cfg.init_timeout_s * cfg.init_wall_factor:
            self.kill("init timeout", "init_error", error_body(
                "Sandbox.Timedout",
                f"INIT phase timed out after {cfg.init_timeout_s:.2f} seconds "
                f"({cpu_ms / 1000.0:.2f} s of CPU, {wall_s:.2f} s elapsed)"))
            return
        self._timer = asyncio.get_running_loop().call_later(INIT_CHECK_S, self._check_init)

    async def _watch_exit(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        how = exit_description(code)
        if self.enclosure.oom_killed():
            self.emit(f"[env {self.env_id}] out of memory: past its {self.config.memory_mb} MB")
        if self._init_error is not None and self.init_ms is None:
            self.kill(f"Init failed ({how})", "init_error", self._init_error)
        else:
            self.kill(f"Runtime exited with error: {how}")
        for _ in range(50):  # its processes are gone; the kernel frees the cgroup just after
            if self.enclosure.remove():
                break
            await asyncio.sleep(0.01)

    def _append_log(self, line: str) -> None:
        self._log.append(line)
        self._log_total += 1
        self.emit(line)

    async def _read_log(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self._log.append(line)
            self._log_total += 1
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
            current = self._current
            if what not in ("response", "error"):
                return json_response(404, error_body("NotFound", f"no route {request.path}"))
            if current is None or current.request_id != request_id or current.future.done():
                return json_response(400, error_body("InvalidRequestID",
                                                     f"unknown request {request_id}"))
            if len(request.body) > MAX_RESPONSE_BYTES:
                self._complete(current, "function_error", error_body(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size exceeded maximum allowed payload size "
                    f"({MAX_RESPONSE_BYTES} bytes)."), "application/json")
                return json_response(413, error_body(
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."))
            kind = "ok" if what == "response" else "function_error"
            self._complete(current, kind, request.body,
                           request.headers.get("content-type", "application/json"))
            return json_response(202, b'{"status":"OK"}')
        if request.method == "POST" and path == "/init/error":
            self._init_error = request.body or error_body("Runtime.Unknown", "init failed")
            # The runtime exits once answered: read Max Memory Used while it still runs.
            self.max_memory_mb()
            return json_response(202, b'{"status":"OK"}')
        return json_response(404, error_body("NotFound", f"no route {request.path}"))

    async def _next(self) -> Response:
        if self.state is State.DEAD:
            return json_response(500, error_body("Runtime.Stopped", "environment stopped"))
        if self.state is State.STARTING:
            self.init_ms = (time.perf_counter() - self.spawned_at) * 1000.0
            self.init_cpu_ms = self._cpu_ms()
            self._cpu_mark = process_cpu_ms(self.pid) if self.pid is not None else None
            if self._timer:
                self._timer.cancel()
            self.emit(f"[env {self.env_id}] ready: init {self.init_ms:.1f} ms "
                      f"({self.init_cpu_ms or 0:.0f} ms of CPU)")
        self.state = State.IDLE
        self.idle_since = time.monotonic()
        self._waiting = asyncio.get_running_loop().create_future()
        self._polling.set()
        if self._current is None:  # nothing pending: frozen (once idle a moment) until
            self.enclosure.freeze_after(  # its next event
                self.pid, self.config.freeze_after_s,
                lambda: self.state is State.IDLE and self._current is None)
        event = await self._waiting
        if event is None:  # killed while waiting: the runtime process is gone already
            return json_response(500, error_body("Runtime.Stopped", "environment stopped"))
        return Response(200, event.payload, [
            ("Lambda-Runtime-Aws-Request-Id", event.request_id),
            ("Lambda-Runtime-Deadline-Ms",
             str(int(time.time() * 1000 + self.config.timeout_s * 1000))),
            ("Lambda-Runtime-Invoked-Function-Arn", self.config.arn),
            ("Content-Type", event.content_type),
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


