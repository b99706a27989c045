"""Fidelity: deploybench's figures against plain references, alternating, in one run.

    .venv/bin/python benchmarks/fidelity.py [--bundle digits] [--rounds 5] [--seconds 3]
                                            [--parts inprocess,flask,grpc,loadgen,bytes]

Each part starts the project's own target and a reference written for the comparison
(``benchmarks/reference/``: not part of deploybench), on the same target CPUs, and loads
them with the same tool. A ratio is computed per round; the table gives the median over
rounds and the range. Two ways to measure a round, named in the table:

* **paired** (the default wherever both sides saturate the target CPUs): both servers
  run at once on the same target CPUs, each in a cgroup of its own with equal CPU shares,
  each loaded by its own client for the same seconds. The kernel gives each half of the
  CPUs, so the ratio of their rates is the ratio of their costs per request, and the
  machine's drift (a shared VM's speed varied by 10-15% between runs of a few seconds
  here) hits both in the same instant. Needs the cgroup v1 ``cpu`` controller, writable
  (root); without it, rounds alternate.
* **alternating**: one side, then the other, in ABBA order (a latency at one user, and
  the in-process comparison, whose p50 would be distorted by sharing a CPU).

* ``inprocess`` (alternating): the in-process driver at 1 user and at its peak over 1, 2
  and 4 users, against the bundle's ``serve_batch`` called in a bare loop (calls/s and the
  p50 of one call). Goals: >= 0.9 (throughput at 1 user and at the peak), p50 within 10%.
* ``flask`` (paired): the Flask target against a plain Flask app (orjson, gunicorn
  gthread, one worker, 1 and 4 threads), both under wrk with 16 connections. Goal: >= 1.0.
  Also each of the Flask target's gunicorn worker classes against its default.
* ``grpc`` (paired): the gRPC target (sync API, then aio) against a plain ``grpc.server``
  (pool of 4, ``repeated float`` request), both under h2load (16 connections, one stream
  each), each sent its own pre-serialised request. Goal: >= 1.0.
* ``loadgen``: deploybench's own load (Locust) against wrk on the Flask target, at 1
  (alternating, on one server), 4 and 16 users/connections (paired: two servers, one
  loaded by each). Goals: >= 0.85 at 1, >= 0.95 at 4 and 16.
* ``bytes``: one request of each client as it arrives on the wire, and its size.

Needs wrk and h2load on PATH (Debian: ``apt-get install wrk nghttp2-client``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from harness.cpus import CpuPlan, plan_cpus
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.launch import LoadJob, LocustLoadGenerator
from scenarios.catalogue import Scenario
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.flask.server import DEFAULT_THREADS, DEFAULT_WORKER_CLASS, WORKER_CLASSES
from targets.flask.target import FlaskTarget
from targets.grpc.client import PREDICT_METHOD, encode_request
from targets.grpc.server import DEFAULT_API
from targets.grpc.target import GrpcTarget
from targets.inprocess.target import InProcessTarget
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import free_port
from targets.wire import codec
from targets.wire.codec import AnswerShape

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference"
ROOT = HERE.parent
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


class Row:
    """One ratio: what, how it was measured, its value per round, and its goal."""

    def __init__(self, what: str, mode: str, values: list[float], goal: float | None) -> None:
        self.what, self.mode, self.values, self.goal = what, mode, values, goal


# -- measuring two sides -------------------------------------------------------------------

class Groups:
    """Two cgroups (v1 ``cpu``) with equal shares: side A's processes and side B's."""

    def __init__(self) -> None:
        self.paths = [CGROUP_CPU / f"deploybench-fidelity-{side}-{os.getpid()}"
                      for side in "ab"]
        for path in self.paths:
            path.mkdir()

    @staticmethod
    def available() -> bool:
        return (CGROUP_CPU / "cgroup.procs").exists() and os.access(CGROUP_CPU, os.W_OK)

    def put(self, side: int, pid: int) -> None:
        """``pid`` and its children (by PID) into side 0 or 1."""
        root = psutil.Process(pid)
        for proc in (root, *root.children(recursive=True)):
            (self.paths[side] / "cgroup.procs").write_text(str(proc.pid))

    def close(self) -> None:
        for path in self.paths:
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                path.rmdir()


@contextlib.contextmanager
def groups(args: argparse.Namespace) -> Iterator[Groups | None]:
    if args.mode == "alternating" or not Groups.available():
        yield None
        return
    made = Groups()
    try:
        yield made
    finally:
        made.close()


def at_once(a: Callable[[], float], b: Callable[[], float], b_first: bool = False
            ) -> tuple[float, float]:
    """Run both measurements at the same time (one starts a moment before the other:
    ``b_first`` says which); their results."""
    out: dict[str, float] = {}
    errors: list[BaseException] = []

    def run(key: str, fn: Callable[[], float]) -> None:
        try:
            out[key] = fn()
        except BaseException as exc:  # raised below, in the caller's thread
            errors.append(exc)

    first, second = (("b", b), ("a", a)) if b_first else (("a", a), ("b", b))
    thread = threading.Thread(target=run, args=first)
    thread.start()
    run(*second)
    thread.join()
    if errors:
        raise errors[0]
    return out["a"], out["b"]


def measure(rounds: int, paired: bool, a: Callable[[], float], b: Callable[[], float]
            ) -> tuple[list[float], list[float]]:
    """``rounds`` measurements of each side: at once (paired) or in ABBA order, after one
    of each that is not kept (the servers' first requests: lazy initialisation)."""
    xs: list[float] = []
    ys: list[float] = []
    at_once(a, b) if paired else (a(), b())
    for r in range(rounds):
        if paired:
            x, y = at_once(a, b, b_first=r % 2 == 1)
        elif r % 2 == 0:
            x = a()
            y = b()
        else:
            y = b()
            x = a()
        xs.append(x)
        ys.append(y)
    return xs, ys


def tool_rounds(args: argparse.Namespace, cpus: CpuPlan, paired: bool,
                tool: Callable[[CpuPlan, str, Path, int, float], float],
                a: tuple[str, Path], b: tuple[str, Path], connections: int = 16
                ) -> tuple[list[float], list[float]]:
    """:func:`measure` of one load tool (wrk, h2load) against ``a`` and ``b``, each a URL
    and the tool's request file."""
    return measure(args.rounds, paired,
                   lambda: tool(cpus, *a, connections, args.seconds),
                   lambda: tool(cpus, *b, connections, args.seconds))


def ratios(ours: list[float], ref: list[float]) -> list[float]:
    return [o / r for o, r in zip(ours, ref, strict=True)]


# -- load tools ----------------------------------------------------------------------------

def taskset(cpus: tuple[int, ...]) -> list[str]:
    return ["taskset", "-c", format_cpus(list(cpus))]


def wrk_script(body: bytes, headers: dict[str, str], path: Path) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode('latin-1'))}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(cpus: CpuPlan, url: str, script: Path, connections: int, seconds: float) -> float:
    """wrk's requests per second (an error or a request unanswered in 10 s raises)."""
    done = subprocess.run([*taskset(cpus.loadgen), "wrk", "-t1", f"-c{connections}",
                           f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s",
                           str(script), url],
                          capture_output=True, text=True, check=True)
    text = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if found is None:
        raise RuntimeError(f"wrk printed no rate:\n{text}")
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk saw errors:\n{text}")
    return float(found.group(1))


def grpc_frame(message: bytes, path: Path) -> Path:
    """A gRPC request body: uncompressed flag, big-endian length, the message."""
    path.write_bytes(b"\0" + struct.pack(">I", len(message)) + message)
    return path


def h2load(cpus: CpuPlan, url: str, body: Path, connections: int, seconds: float) -> float:
    """h2load's requests per second (HTTP/2, one stream per connection)."""
    done = subprocess.run(
        [*taskset(cpus.loadgen), "h2load", "-t1", f"-c{connections}", "-m1",
         f"-D{max(1, round(seconds))}", f"--data={body}",
         "-H", "content-type: application/grpc", "-H", "te: trailers", url],
        capture_output=True, text=True, check=True)
    text = done.stdout
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    failed = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, "
                       r"(\d+) failed, (\d+) errored", text)
    if rate is None or failed is None:
        raise RuntimeError(f"h2load printed no rate:\n{text}")
    if int(failed.group(1)) or int(failed.group(2)):
        raise RuntimeError(f"h2load saw failures:\n{text}")
    return float(rate.group(1))


def deploybench(name: str, spec: Any, cpus: CpuPlan, users: int, seconds: float,
                work: Path, on_measure: Callable[[], None] | None = None,
                answers: list[AnswerShape] | None = None) -> dict[str, float]:
    """One closed-loop stage of deploybench's own load: req/s and p50 (ms).
    ``on_measure`` is called when the measurement window opens; ``answers``: the shape
    each answer is checked against, as in a run (see answer_shapes)."""
    scenario = Scenario(name="fidelity", description="", concurrency=(users,),
                        stability_windows=1, max_windows=1, warmup_s=1.0, window_s=seconds,
                        cooldown_s=0.3, drain_timeout_s=30, sha256="", path="")
    job = LoadJob(target=name, spec=spec, scenario=scenario, loadgen_cpus=list(cpus.loadgen),
                  work_dir=work / f"job-{time.monotonic_ns()}", log_path=work / "loadgen.log",
                  answers=answers)

    def on_event(event: dict[str, Any]) -> None:
        if on_measure is not None and event.get("phase") == "measure":
            on_measure()

    load = LocustLoadGenerator().run(job, on_event).checked()
    if load.error:
        raise RuntimeError(f"deploybench's load failed: {load.error}")
    stage = summarize_stage(load.stages[0])
    if stage["errors"]:
        raise RuntimeError(f"deploybench saw errors: {stage['error_kinds']}")
    lat = stage["latency_ms"]
    assert lat is not None
    return {"rps": stage["rps"], "p50": lat["p50"]}


# -- reference servers ---------------------------------------------------------------------

class Server:
    """A reference server in its own process, ready once it has loaded the model; stopped
    by its PID."""

    def __init__(self, script: str, port: int, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        ready = Path(tempfile.mkdtemp()) / "ready"
        self.proc = subprocess.Popen(
            [sys.executable, str(REFERENCE / script), "--port", str(port),
             "--ready-file", str(ready), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)
        self.port = port
        self.pid = self.proc.pid
        deadline = time.monotonic() + 120
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{script} exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"{script} was not ready within 120 s")
            time.sleep(0.1)
        shutil.rmtree(ready.parent, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bare_loop(cpus: CpuPlan, bundle: str, seconds: float) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, str(REFERENCE / "bare_loop.py"), "--bundle", bundle, "--cpus",
         ",".join(map(str, cpus.target)), "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def target_pid(target: Any) -> int:
    assert target._server is not None
    return int(target._server.pid)


# -- the parts -----------------------------------------------------------------------------

def part_inprocess(args: argparse.Namespace, cpus: CpuPlan, work: Path) -> list[Row]:
    bundle = get_bundle(args.bundle)
    spec = InProcessTarget(args.bundle, list(cpus.target)).load_spec(bundle.example_requests())
    bare: list[dict[str, float]] = []
    one: list[dict[str, float]] = []
    peak: list[float] = []

    def ours() -> None:
        stages = [deploybench("inprocess", spec, cpus, users, args.seconds, work)
                  for users in (1, 2, 4)]
        one.append(stages[0])
        peak.append(max(s["rps"] for s in stages))

    for r in range(args.rounds):
        steps = [lambda: bare.append(bare_loop(cpus, args.bundle, args.seconds)), ours]
        for step in steps if r % 2 == 0 else steps[::-1]:
            step()
        print(f"  round {r + 1}: bare {bare[-1]['calls_per_s']:,.0f}/s "
              f"p50 {bare[-1]['p50_ms'] * 1000:.1f} us; in-process 1 user "
              f"{one[-1]['rps']:,.0f}/s p50 {one[-1]['p50'] * 1000:.1f} us, peak "
              f"{peak[-1]:,.0f}/s", flush=True)
    calls = [b["calls_per_s"] for b in bare]
    return [
        Row("in-process 1 user req/s / bare loop calls/s", "alternating",
            ratios([o["rps"] for o in one], calls), 0.9),
        Row("bare loop p50 / in-process p50, 1 user", "alternating",
            ratios([b["p50_ms"] for b in bare], [o["p50"] for o in one]), 0.9),
        Row("in-process peak (1, 2, 4 users) / bare loop", "alternating",
            ratios(peak, calls), 0.9),
    ]


def part_flask(args: argparse.Namespace, cpus: CpuPlan, work: Path) -> list[Row]:
    examples = get_bundle(args.bundle).example_requests()
    rows: list[Row] = []
    on = ",".join(map(str, cpus.target))
    with groups(args) as cg:
        mode = "paired" if cg is not None else "alternating"
        # The target against a plain app at the same number of threads per worker: its
        # default (1), and 4 (the plain app's best here).
        for threads in (1, 4):
            port = free_port("127.0.0.1")
            with FlaskTarget(args.bundle, list(cpus.target), "json", threads=threads) as ours, \
                    Server("plain_flask.py", port, "--bundle", args.bundle, "--cpus", on,
                           "--threads", str(threads)) as plain:
                payload = ours.load_spec(examples)["payloads"][0]
                script = wrk_script(payload["body"], payload["headers"], work / "post.lua")
                ours_url, plain_url = ours.url + "/predict", f"http://127.0.0.1:{port}/predict"
                if cg is not None:
                    cg.put(0, target_pid(ours))
                    cg.put(1, plain.pid)
                xs, ys = tool_rounds(args, cpus, cg is not None, wrk, (ours_url, script),
                                     (plain_url, script))
            label = f"{threads} thread{'s' if threads > 1 else ''}"
            print(f"  {label}: ours {statistics.median(xs):,.0f} req/s, plain Flask "
                  f"{statistics.median(ys):,.0f}", flush=True)
            rows.append(Row(f"Flask target / plain Flask, {label} each, wrk -c16", mode,
                            ratios(xs, ys), 1.0))
        # The target's own options, against its default: what the default was chosen by;
        # first the default against itself, the method's own resolution (an A/A test).
        with FlaskTarget(args.bundle, list(cpus.target), "json") as target:
            payload = target.load_spec(examples)["payloads"][0]
            script = wrk_script(payload["body"], payload["headers"], work / "post.lua")
            ours_url = target.url + "/predict"
            if cg is not None:
                cg.put(0, target_pid(target))
            for worker_class, threads in [(DEFAULT_WORKER_CLASS, DEFAULT_THREADS)] \
                    + [(w, 1) for w in WORKER_CLASSES[1:]] + [("gthread", 2), ("gthread", 4)]:
                other = FlaskTarget(args.bundle, list(cpus.target), "json",
                                    worker_class=worker_class, threads=threads)
                with other:
                    if cg is not None:
                        cg.put(1, target_pid(other))
                    other_url = other.url + "/predict"
                    xs, ys = tool_rounds(args, cpus, cg is not None, wrk,
                                         (ours_url, script), (other_url, script))
                label = "second instance (A/A)" if (worker_class, threads) == (
                    DEFAULT_WORKER_CLASS, DEFAULT_THREADS) else worker_class + (
                    f", {threads} threads" if worker_class == "gthread" else "")
                print(f"  default {statistics.median(xs):,.0f} req/s, {label} "
                      f"{statistics.median(ys):,.0f}", flush=True)
                rows.append(Row(f"Flask target's default / its {label}", mode,
                                ratios(xs, ys), None))
    return rows


def part_grpc(args: argparse.Namespace, cpus: CpuPlan, work: Path) -> list[Row]:
    sys.path.insert(0, str(REFERENCE))
    # The reference server is a script beside its siblings, not a package: importable
    # only once its folder is on the path.
    from plain_grpc import METHOD, messages  # type: ignore[import-not-found]  # noqa: PLC0415

    example = get_bundle(args.bundle).example_requests()[0]
    inp, _ = messages()
    ours_body = grpc_frame(encode_request(example), work / "ours.grpc")
    plain_body = grpc_frame(inp(values=example.ravel().tolist()).SerializeToString(),
                            work / "plain.grpc")
    port = free_port("127.0.0.1")
    rows: list[Row] = []
    with groups(args) as cg, Server("plain_grpc.py", port, "--bundle", args.bundle, "--cpus",
                                    ",".join(map(str, cpus.target)), "--threads", "4") as plain:
        if cg is not None:
            cg.put(1, plain.pid)
        mode = "paired" if cg is not None else "alternating"
        plain_url = f"http://127.0.0.1:{port}{METHOD}"
        for api in ("sync", "aio"):
            with GrpcTarget(args.bundle, list(cpus.target), "grpc", api=api) as target:
                if cg is not None:
                    cg.put(0, target_pid(target))
                ours_url = f"http://{target.address}{PREDICT_METHOD}"
                xs, ys = tool_rounds(args, cpus, cg is not None, h2load,
                                     (ours_url, ours_body), (plain_url, plain_body))
            print(f"  ours ({api}) {statistics.median(xs):,.0f} req/s, plain gRPC "
                  f"{statistics.median(ys):,.0f}", flush=True)
            rows.append(Row(f"gRPC target ({api}) / plain grpc.server, h2load -c16", mode,
                            ratios(xs, ys), 1.0 if api == DEFAULT_API else None))
    # The target's pool size, against its default: what the default was chosen by.
    with groups(args) as cg, GrpcTarget(args.bundle, list(cpus.target), "grpc") as target:
        ours_url = f"http://{target.address}{PREDICT_METHOD}"
        if cg is not None:
            cg.put(0, target_pid(target))
        for threads in (1, 2, 8):
            with GrpcTarget(args.bundle, list(cpus.target), "grpc", threads=threads) as other:
                if cg is not None:
                    cg.put(1, target_pid(other))
                other_url = f"http://{other.address}{PREDICT_METHOD}"
                xs, ys = tool_rounds(args, cpus, cg is not None, h2load,
                                     (ours_url, ours_body), (other_url, ours_body))
            print(f"  default ({target.threads} threads) {statistics.median(xs):,.0f} req/s, "
                  f"{threads} thread{'s' if threads > 1 else ''} {statistics.median(ys):,.0f}",
                  flush=True)
            rows.append(Row(f"gRPC target's default pool ({target.threads}) / a pool of "
                            f"{threads}", "paired" if cg is not None else "alternating",
                            ratios(xs, ys), None))
    return rows


def answer_shapes(bundle_name: str, examples: list[Any]) -> list[AnswerShape]:
    """What a well-formed answer to each example holds: a run checks every answer against
    this (targets.wire.codec.answer_problem), so the benchmark's load does too."""
    bundle = get_bundle(bundle_name)
    bundle.prepare()
    bundle.load()
    return [codec.answer_shape(serve_batch(bundle, example)) for example in examples]


def part_loadgen(args: argparse.Namespace, cpus: CpuPlan, work: Path) -> list[Row]:
    examples = get_bundle(args.bundle).example_requests()
    answers = answer_shapes(args.bundle, examples)
    rows: list[Row] = []
    with groups(args) as cg, \
            FlaskTarget(args.bundle, list(cpus.target), "json") as one, \
            FlaskTarget(args.bundle, list(cpus.target), "json") as two:
        spec = one.load_spec(examples)
        payload = spec["payloads"][0]
        script = wrk_script(payload["body"], payload["headers"], work / "post.lua")
        if cg is not None:
            cg.put(0, target_pid(one))
            cg.put(1, target_pid(two))
        for users, goal in ((1, 0.85), (4, 0.95), (16, 0.95)):
            paired = cg is not None and users > 1  # at 1 user neither saturates its CPU
            xs, ys = [], []
            for r in range(args.rounds):
                if paired:
                    x, y = _loadgen_paired(args, cpus, work, spec, script, two, users,
                                           answers)
                else:
                    x, y = _loadgen_alternating(args, cpus, work, spec, script, one, users,
                                                r % 2 == 1, answers)
                xs.append(x)
                ys.append(y)
            print(f"  {users} users: deploybench {statistics.median(xs):,.0f} req/s, wrk "
                  f"{statistics.median(ys):,.0f}", flush=True)
            rows.append(Row(f"deploybench / wrk on the Flask target, {users} user"
                            f"{'s' if users > 1 else ''}", "paired" if paired else "alternating",
                            ratios(xs, ys), goal))
    return rows


def _loadgen_paired(args: argparse.Namespace, cpus: CpuPlan, work: Path, spec: Any,
                    script: Path, other: FlaskTarget, users: int,
                    answers: list[AnswerShape]) -> tuple[float, float]:
    """deploybench on one server and, during its measurement window, wrk on the other."""
    measuring = threading.Event()
    box: dict[str, float] = {}

    def run_wrk() -> None:
        if measuring.wait(120):
            box["wrk"] = wrk(cpus, other.url + "/predict", script, users, args.seconds)

    thread = threading.Thread(target=run_wrk)
    thread.start()
    ours = deploybench("flask", spec, cpus, users, args.seconds, work,
                       on_measure=measuring.set, answers=answers)["rps"]
    thread.join()
    return ours, box["wrk"]


def _loadgen_alternating(args: argparse.Namespace, cpus: CpuPlan, work: Path, spec: Any,
                         script: Path, target: FlaskTarget, users: int, wrk_first: bool,
                         answers: list[AnswerShape]) -> tuple[float, float]:
    """deploybench, then wrk, on the same server (or the other way round)."""
    theirs = wrk(cpus, target.url + "/predict", script, users, args.seconds) \
        if wrk_first else 0.0
    ours = deploybench("flask", spec, cpus, users, args.seconds, work,
                       answers=answers)["rps"]
    if not wrk_first:
        theirs = wrk(cpus, target.url + "/predict", script, users, args.seconds)
    return ours, theirs


class Capture:
    """A loopback server that keeps the first request of each connection, as received."""

    #: A well-formed answer (the load users decode and check every answer).
    BODY = b'{"predictions":[{"label":0,"probabilities":[1.0]}]}'
    ANSWER = (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: '
              + str(len(BODY)).encode() + b'\r\n\r\n' + BODY)

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client may reset at its end
            first = True
            while data := conn.recv(65536):
                if first:
                    self.requests.append(data)
                    first = False
                conn.sendall(self.ANSWER)

    def close(self) -> None:
        self.sock.close()


def part_bytes(args: argparse.Namespace, cpus: CpuPlan, work: Path) -> list[Row]:
    examples = get_bundle(args.bundle).example_requests()
    with FlaskTarget(args.bundle, list(cpus.target), "json") as target:
        spec = target.load_spec(examples)
    capture = Capture()
    url = f"http://127.0.0.1:{capture.port}"
    spec = {**spec, "url": url, "watch_pids": []}
    payload = spec["payloads"][0]
    deploybench("flask", spec, cpus, 1, 0.5, work)
    ours = capture.requests[-1]
    wrk(cpus, url + "/predict", wrk_script(payload["body"], payload["headers"],
                                           work / "post.lua"), 1, 1)
    theirs = capture.requests[-1]
    capture.close()
    for who, raw in (("deploybench", ours), ("wrk", theirs)):
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        print(f"  {who}: {len(raw)} bytes in one read (headers {len(head) + 4}, body "
              f"{len(raw) - len(head) - 4}); head:")
        for line in head.split("\r\n"):
            print(f"      {line}")
    return []


PARTS: dict[str, Callable[[argparse.Namespace, CpuPlan, Path], list[Row]]] = {
    "inprocess": part_inprocess, "flask": part_flask, "grpc": part_grpc,
    "loadgen": part_loadgen, "bytes": part_bytes,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="digits")
    parser.add_argument("--rounds", type=int, default=5,
                        help="measurements of each side (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="length of one measurement (default 3)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--mode", choices=("paired", "alternating"), default="paired",
                        help="for the saturated comparisons: both sides at once in cgroups "
                             "of equal CPU shares (default; falls back to alternating "
                             "without a writable cgroup cpu controller), or in turn")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"error: unknown part(s) {unknown}. Choose from {', '.join(PARTS)}",
              file=sys.stderr)
        return 2
    for tool, package, needed in (("wrk", "wrk", {"flask", "loadgen", "bytes"}),
                                  ("h2load", "nghttp2-client", {"grpc"})):
        if needed & set(parts) and shutil.which(tool) is None:
            print(f"error: {tool} is not on PATH. Install it (Debian: apt-get install "
                  f"{package})", file=sys.stderr)
            return 1
    if args.mode == "paired" and not Groups.available():
        print(f"note: no writable cgroup cpu controller at {CGROUP_CPU}: the saturated "
              "comparisons alternate instead of running paired", file=sys.stderr)
    cpus = plan_cpus(None, None)
    get_bundle(args.bundle).prepare()
    print(f"{cpus.describe()}; bundle {args.bundle}; {args.rounds} rounds of "
          f"{args.seconds:g} s per side", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts:
            print(f"{part}:", flush=True)
            rows += PARTS[part](args, cpus, Path(tmp))
    if rows:
        print(f"\n{'ratio':<58} {'mode':<11} {'median':>6} {'range':>12}  goal")
        for row in rows:
            med = statistics.median(row.values)
            verdict = "" if row.goal is None else \
                f">= {row.goal:g} {'met' if med >= row.goal else 'NOT met'}"
            print(f"{row.what:<58} {row.mode:<11} {med:>6.3f} "
                  f"{min(row.values):>5.3f}-{max(row.values):<6.3f} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
