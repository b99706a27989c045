"""The FastAPI target as the orchestrator sees it: a uvicorn server (a local process or a
container), spoken to through the HTTP prediction API, as the Flask target is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from targets.fastapi.server import DEFAULT_POOL, DEFAULT_THREADS
from targets.served import HttpServedTarget


@dataclass(frozen=True)
class FastapiOptions:
    """``run --fastapi-workers/--fastapi-threads/--fastapi-pool`` (None: the default)."""

    workers: int | None = None
    #: Threads that run the model in each worker.
    threads: int | None = None
    #: Where they are: "executor", "anyio" or "sync" (targets.fastapi.app.POOLS).
    pool: str | None = None


class FastapiTarget(HttpServedTarget):
    name = "fastapi"
    server_module = "targets.fastapi.server"
    default_threads = DEFAULT_THREADS
    # Under batching the event loop holds the waiting requests: the pool keeps its size
    # (and is not used: the batcher's thread runs the model).
    batch_waits_in_threads = False

    def __init__(self, *args: Any, pool: str = DEFAULT_POOL, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Where the model runs, off the event loop.
        self.pool = pool
        self.server_kind = ("uvicorn + FastAPI (batcher)" if self.batching is not None
                            else f"uvicorn + FastAPI ({pool} pool)")

    def server_arguments(self) -> list[str]:
        return ["--pool", self.pool]
