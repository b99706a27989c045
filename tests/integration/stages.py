"""What several integration tests do with real targets: one short load stage, and the
check that a multi-worker server spreads connections and stops whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from harness.loadgen.launch import LoadJob, LoadResult, LocustLoadGenerator
from scenarios.catalogue import Scenario
from targets.wire.codec import AnswerShape


def one_window(**over: Any) -> Scenario:
    """A stage of one fixed 2 s window after a 0.5 s warm-up (override any field)."""
    fields: dict[str, Any] = dict(name="it", description="", concurrency=(4,), warmup_s=0.5,
                                  stability_windows=1, max_windows=1, window_s=2.0,
                                  cooldown_s=0.2, drain_timeout_s=10.0, sha256="", path="")
    fields.update(over)
    return Scenario(**fields)


def drive(target: str, spec: Any, loadgen_cpus: list[int], tmp_path: Path,
          scenario: Scenario | None = None, reference: Any = None,
          events: list[dict[str, Any]] | None = None,
          on_event: Callable[[dict[str, Any]], None] | None = None,
          answers: list[AnswerShape] | None = None) -> LoadResult:
    """Run ``scenario`` against a target's load spec with the real Locust generator;
    its progress events go to ``events`` and ``on_event`` as they come; ``answers``: what
    each answer is checked against (LoadJob.answers)."""
    job = LoadJob(target=target, spec=spec, scenario=scenario or one_window(),
                  loadgen_cpus=loadgen_cpus, work_dir=tmp_path / "work",
                  log_path=tmp_path / "lg.log", reference=reference, answers=answers)

    def sink(event: dict[str, Any]) -> None:
        if events is not None:
            events.append(event)
        if on_event is not None:
            on_event(event)

    return LocustLoadGenerator().run(job, sink).checked()


def assert_two_workers_serve_and_stop(target: Any, answering_pid: Callable[[], int],
                                      connections: int = 30) -> None:
    """A target started with two workers on one port: a supervisor and two servers, new
    connections spread over both by the kernel (``answering_pid`` opens one and says which
    process answered), and every process gone once the target stops."""
    with target:
        assert target._server is not None
        tree = target._server.tree()
        assert len(tree) == 3  # the supervisor and two servers
        pids = {p.pid for p in tree}
        seen = {answering_pid() for _ in range(connections)}
        assert seen <= pids
        assert len(seen) == 2
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in pids)
