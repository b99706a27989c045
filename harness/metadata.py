"""What a run records about where and how it ran, gathered by small ``collect_*`` functions.

Versions are read from package metadata, never by importing: importing Locust here would
monkey-patch the orchestrator for gevent.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, cast

import psutil

import harness
from reports.runblocks import Metadata

PACKAGES = ("torch", "locust", "flask", "gunicorn", "fastapi", "uvicorn", "numpy", "gevent",
            "geventhttpclient")
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def collect_cpu() -> Metadata:
    model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    freq = psutil.cpu_freq()
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpu_mhz": round(freq.current) if freq else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def collect_versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "deploybench": harness.__version__}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect_git() -> Metadata:
    """The deploybench source tree's commit, when it is a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True,
                                  text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(dirty) if commit else None}


def collect_host() -> Metadata:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def collect_all() -> Metadata:
    # The versions' keys are PACKAGES' names, each one of Metadata's.
    versions = cast("Metadata", collect_versions())
    return {**collect_host(), **collect_cpu(), **versions, **collect_git()}
