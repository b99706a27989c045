"""The Lambda target as the orchestrator sees it: the emulator process on loopback,
loaded through its Function URL front door with the same requests as Flask."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from targets.awslambda.frontdoor import COLD_HEADER
from targets.awslambda.server import (
    DEFAULT_CONCURRENCY,
    DEFAULT_KEEPALIVE_S,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
)
from targets.awslambda.shape import visible_vcpus
from targets.base import LoadSpec
from targets.errors import TargetError
from targets.served import HttpServedTarget
from targets.wire import codec

if TYPE_CHECKING:
    import numpy as np

#: The registry names the records ``NAME-invocations.jsonl``; the CloudWatch view is
#: ``NAME-cloudwatch.jsonl`` beside them.
RECORDS_SUFFIX = "-invocations.jsonl"


@dataclass(frozen=True)
class LambdaOptions:
    """``run --lambda-memory-mb/--lambda-concurrency/--lambda-timeout/--lambda-sandbox/
    --lambda-freeze`` (None: the
    default; for concurrency, the scenario's highest, capped)."""

    memory_mb: int | None = None
    concurrency: int | None = None
    timeout_s: float | None = None
    #: ``run --lambda-sandbox``: "auto" (enforce what the machine allows) or "off".
    sandbox: str | None = None
    #: ``run --lambda-freeze/--no-lambda-freeze``.
    freeze: bool | None = None


class LambdaTarget(HttpServedTarget):
    name = "lambda"
    server_module = "targets.awslambda.server"
    server_kind = "Lambda emulator (awslambdaric environments) via a Function URL"
    default_threads = 1
    health_path = "/_deploybench/health"

    def __init__(self, *args: Any, memory_mb: int = DEFAULT_MEMORY_MB,
                 concurrency: int = DEFAULT_CONCURRENCY, timeout_s: float = DEFAULT_TIMEOUT_S,
                 keepalive_s: float = DEFAULT_KEEPALIVE_S, records_path: Path | None = None,
                 sandbox: str = "auto", freeze: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = 1
        self.memory_mb = memory_mb
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self.records_path = records_path
        #: The emulator's ``--sandbox``/``--freeze``; what it could enforce is read back
        #: from its stats (:meth:`sandbox`).
        self.sandbox_mode = sandbox
        self.freeze = freeze
        self._sandbox: dict[str, Any] | None = None
        self.client_timeout_s = timeout_s + 30  # a cold start, then the invocation

    def container_memory_mb(self) -> int | None:
        """Every environment the function may run, each with its memory size, as Lambda
        gives them (2 GB per CPU would OOM-kill environments from the ninth on), capped
        at this machine's memory."""
        host = int(psutil.virtual_memory().total / 2**20)
        return min(host, self.concurrency * self.memory_mb)

    def server_arguments(self) -> list[str]:
        extra = ["--memory-mb", str(self.memory_mb), "--concurrency", str(self.concurrency),
                 "--timeout", str(self.timeout_s), "--keepalive", str(self.keepalive_s),
                 "--sandbox", self.sandbox_mode, "--freeze" if self.freeze else "--no-freeze"]
        if self.records_path is not None:
            extra += ["--records", str(self.records_path)]
        if self.cloudwatch_path is not None:
            extra += ["--cloudwatch-file", str(self.cloudwatch_path)]
        return extra

    @property
    def cloudwatch_path(self) -> Path | None:
        """With metrics on, where the emulator writes CloudWatch's per-minute view of the
        function: ``NAME-cloudwatch.jsonl`` beside the records (None: metrics off, or no
        records file)."""
        if not self.monitoring.metrics or self.records_path is None:
            return None
        name = self.records_path.name
        stem = name[:-len(RECORDS_SUFFIX)] if name.endswith(RECORDS_SUFFIX) \
            else self.records_path.stem
        return self.records_path.with_name(f"{stem}-cloudwatch.jsonl")

    def _admin(self, method: str, what: str) -> dict[str, Any] | None:
        if self._client is None:
            return None
        try:
            status, body = self._client.request(method, f"/_deploybench/{what}")
            doc = json.loads(body) if status == 200 else None
        except (TargetError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def reset(self) -> int:
        """Kill every execution environment: the next requests are cold starts."""
        doc = self._admin("POST", "reset")
        return int(doc.get("killed", 0)) if doc else 0

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "stats") or {}

    def cold_start(self, example: np.ndarray) -> dict[str, Any]:
        """Kill every environment, then time one request through the Function URL."""
        self.reset()
        body, headers = codec.encode_request(example, self.encoding)
        started = time.perf_counter()
        status, answer, reply = self.request_with_headers(body, headers)
        total = time.perf_counter() - started
        if status != 200:
            raise TargetError(f"lambda answered {status} to a cold request: {answer[:200]!r}")
        init = reply.get(COLD_HEADER.lower())
        return {"total_s": total, "init_ms": float(init) if init else None,
                "definition": "every environment killed, then one request through the "
                              "Function URL: a new environment (process start, imports, "
                              "model load: Init) and the invocation"}

    def redeploy(self, example: np.ndarray) -> dict[str, Any]:
        """Update the function's code (its environments retired), then time one request
        through the Function URL: a new environment's Init and the invocation."""
        body, headers = codec.encode_request(example, self.encoding)
        started = time.perf_counter()
        updated = self._admin("POST", "update-code")
        version = (updated or {}).get("code_version")
        if not isinstance(version, int) or version < 2:
            raise TargetError(f"the Lambda emulator did not update the function's code "
                              f"(answered {updated!r})")
        status, answer, reply = self.request_with_headers(body, headers)
        total = time.perf_counter() - started
        if status != 200:
            raise TargetError(f"lambda answered {status} after a code update: "
                              f"{answer[:200]!r}")
        init = reply.get(COLD_HEADER.lower())
        if init is None:
            raise TargetError("lambda answered from an environment of the old code after "
                              "a code update")
        return {"total_s": total, "init_ms": float(init), "code_version": version,
                "predictions": codec.decode_predictions(answer),
                "kind": "code update, new environment",
                "definition": "the function's code updated (every environment of the old "
                              "version retired), then one request through the Function "
                              "URL: a new environment's Init and the invocation"}

    def sandbox(self) -> dict[str, Any] | None:
        """How the running emulator shapes its environments (shape.Sandbox: the CPU
        share, memory limit and freeze it enforces, or why not); None before start."""
        if self._sandbox is None:
            found = self.stats().get("sandbox")
            self._sandbox = found if isinstance(found, dict) else None
        return self._sandbox

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "memory_mb": self.memory_mb, "sandbox": self.sandbox(),
                "concurrency_limit": self.concurrency, "timeout_s": self.timeout_s,
                "keepalive_s": self.keepalive_s, "workers": None, "threads_per_worker": None,
                "torch_threads_per_worker": self._torch_threads(),
                "cloudwatch_file": None if self.cloudwatch_path is None
                else str(self.cloudwatch_path)}

    def _torch_threads(self) -> int:
        """The environments' torch threads, as the emulator set them (its Shaper): the
        vCPUs AWS shows the size where the CPU share was enforced, else one."""
        box = self.sandbox()
        if not box or box.get("cpu", "none") == "none":
            return 1
        return max(1, min(visible_vcpus(self.memory_mb), len(self.cpus)))

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        return {**super().load_spec(examples), "cold_header": COLD_HEADER}

    def platform_records(self) -> list[dict[str, Any]]:
        """The emulator's per-invocation records (REPORT fields), for the run's statistics."""
        if self.records_path is None or not self.records_path.exists():
            return []
        return [json.loads(line) for line in self.records_path.read_text().splitlines()
                if line.strip()]
