"""CPU time and memory of the target and of the load generator, read at window edges.

Served targets are process trees (gunicorn's master and workers): their CPU is the sum
over the tree. The in-process target is a set of threads inside this process: its CPU is
those threads' time, and the load generator's is the rest of this process.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class Reading:
    target_cpu_s: float
    loadgen_cpu_s: float
    target_rss_mb: float | None
    target_pss_mb: float | None
    loadgen_rss_mb: float


class ResourceMeter:
    def __init__(self, watch_pids: list[int], thread_ids: set[int] | None = None) -> None:
        self.watch_pids = watch_pids
        self.thread_ids = thread_ids  # in-process target: these threads of this process
        self.me = psutil.Process()

    def _tree(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        for pid in self.watch_pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
        return procs

    def read(self) -> Reading:
        mine = self.me.cpu_times()
        own_cpu = mine.user + mine.system
        own_rss = self.me.memory_info().rss / MB
        if self.thread_ids is not None:
            target_cpu = sum(t.user_time + t.system_time for t in self.me.threads()
                             if t.id in self.thread_ids)
            # The model lives in this process: its memory cannot be told apart from the
            # load generator's, so the process's figures are reported for both.
            pss = self.me.memory_full_info().pss / MB
            return Reading(target_cpu, own_cpu - target_cpu, own_rss, pss, own_rss)
        target_cpu = 0.0
        rss = 0.0
        pss = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                target_cpu += times.user + times.system
                info = proc.memory_full_info()
                rss += info.rss / MB
                pss += info.pss / MB
        return Reading(target_cpu, own_cpu, rss or None, pss or None, own_rss)
