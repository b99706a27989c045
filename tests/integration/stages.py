"""One short load stage against a real target, as the integration tests run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.loadgen import LoadJob, LoadResult, LocustLoadGenerator
from scenarios.catalogue import Scenario


def one_window(**over: Any) -> Scenario:
    """A stage of one fixed 2 s window after a 0.5 s warm-up (override any field)."""
    fields: dict[str, Any] = dict(name="it", description="", concurrency=(4,), warmup_s=0.5,
                                  stability_windows=1, max_windows=1, window_s=2.0,
                                  cooldown_s=0.2, drain_timeout_s=10.0, sha256="", path="")
    fields.update(over)
    return Scenario(**fields)


def drive(target: str, spec: Any, loadgen_cpus: list[int], tmp_path: Path,
          scenario: Scenario | None = None, reference: Any = None,
          events: list[dict[str, Any]] | None = None) -> LoadResult:
    """Run ``scenario`` against a target's load spec with the real Locust generator."""
    job = LoadJob(target=target, spec=spec, scenario=scenario or one_window(),
                  loadgen_cpus=loadgen_cpus, work_dir=tmp_path / "work",
                  log_path=tmp_path / "lg.log", reference=reference)
    sink = events.append if events is not None else (lambda e: None)
    return LocustLoadGenerator().run(job, sink)
