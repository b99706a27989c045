"""The in-process target: the application calls the bundle directly, no serving layer.

Under load there is no network and so no client: the in-process driver
(:mod:`harness.loadgen.embedded`) *is* the application. Its request handlers are OS threads
pinned to the target CPUs, one torch thread each, calling the bundle with no other
scheduler in between, so the latency is the model's call as the application sees it
(and, with more users than CPUs, the wait for a CPU). Locust drives every network target;
it never runs in this target's process.

Parity for this target is checked by that driver, through the same handler threads,
before any load: the path measured is the path checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets.base import LoadSpec, TargetBase
from targets.bundles.protocol import Bundle, serve_batch
from targets.bundles.resolve import get_bundle
from targets.errors import TargetError
from targets.monitoring import INPROCESS_URL, OFF, Monitoring
from targets.runtimes.cpuset import format_cpus
from targets.runtimes.process import child_env

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction


class InProcessTarget(TargetBase):
    name = "inprocess"
    #: Parity is checked by the in-process driver, on the path it measures.
    parity_in_load_generator = True

    def __init__(self, bundle: str, cpus: list[int], *, monitoring: Monitoring = OFF,
                 prediction_log_dir: Path | None = None) -> None:
        self.bundle_name = bundle
        self.cpus = list(cpus)
        #: --metrics and --log-predictions: done by the in-process application, in the
        #: load generator's process (harness.loadgen.embedded).
        self.monitoring = monitoring
        self.prediction_log_dir = prediction_log_dir if monitoring.log_rate else None
        self._bundle: Bundle | None = None

    def start(self) -> None:
        bundle = get_bundle(self.bundle_name)
        bundle.load()
        self._bundle = bundle

    def health(self) -> bool:
        return self._bundle is not None

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        assert self._bundle is not None, "start() first"
        return serve_batch(self._bundle, batch)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "the in-process driver's process: handler threads (one per user) "
                       "pinned to the target CPUs",
            "server": "none: direct call to the bundle",
            "cpus": self.cpus,
            "workers": 1,
            "torch_threads_per_worker": 1,
            "encoding": "none (numpy arrays)",
            "monitoring": {**self.monitoring.describe(),
                           "metrics_url": INPROCESS_URL if self.monitoring.metrics else None,
                           "prediction_log_dir": None if self.prediction_log_dir is None
                           else str(self.prediction_log_dir)},
        }

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        spec: LoadSpec = {"protocol": "inprocess", "bundle": self.bundle_name,
                          "cpus": self.cpus}
        if not self.monitoring.off:
            spec["monitoring"] = self.monitoring.describe()
        if self.monitoring.metrics:
            spec["metrics_url"] = INPROCESS_URL
        if self.prediction_log_dir is not None:
            spec["prediction_log_dir"] = str(self.prediction_log_dir)
        return spec

    def cold_start(self, example: np.ndarray) -> dict[str, Any]:
        """A fresh Python process that loads the bundle and predicts once, timed whole."""

        started = time.perf_counter()
        done = subprocess.run(  # pinned like the target; one torch thread
            ["taskset", "-c", format_cpus(self.cpus), sys.executable, "-m",
             "targets.inprocess", self.bundle_name] if self.cpus else
            [sys.executable, "-m", "targets.inprocess", self.bundle_name],
            env=child_env({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),
            capture_output=True, text=True, timeout=300, check=False,
        )
        total = time.perf_counter() - started
        if done.returncode != 0:
            raise TargetError(f"in-process cold start failed: {done.stderr[-500:]}")
        return {"total_s": total, "definition": "a fresh Python process: interpreter start, "
                                                "imports, model load, first prediction"}

    def redeploy(self, example: np.ndarray) -> dict[str, Any]:
        """The running application loads the new model version and predicts once (in a
        thread pinned to the target CPUs, with one torch thread as the in-process driver's
        threads have, so torch's pool on other CPUs does no part of it; torch is imported
        already, as in a running application)."""
        import torch

        outcome: dict[str, Any] = {}
        previous_threads = torch.get_num_threads()

        def reload() -> None:
            try:
                if self.cpus:
                    os.sched_setaffinity(0, self.cpus)  # this thread only
                torch.set_num_threads(1)
                started = time.perf_counter()
                bundle = get_bundle(self.bundle_name)
                bundle.load()
                predictions = serve_batch(bundle, example)
                outcome.update(total_s=time.perf_counter() - started,
                               predictions=predictions)
            except Exception as exc:  # reported below, in the caller's thread
                outcome["error"] = exc

        thread = threading.Thread(target=reload, name="deploybench-redeploy")
        thread.start()
        thread.join()
        torch.set_num_threads(previous_threads)
        if "error" in outcome:
            raise TargetError(f"in-process redeploy failed: {outcome['error']}")
        return {**outcome, "kind": "reload in the running process",
                "definition": "the running application loads the new model version and "
                              "predicts once (no new process, imports done)"}

    def stop(self) -> None:
        self._bundle = None

