"""What every reference here does first (imported by the scripts beside it): the common
options, pinning to ``--cpus`` with one OpenMP/torch thread, and the bundle loaded."""

from __future__ import annotations

import argparse
import os
from typing import Any


def parser(doc: str) -> argparse.ArgumentParser:
    """``--bundle`` and ``--cpus``, described by the first paragraph of ``doc``."""
    out = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    out.add_argument("--bundle", default="digits")
    out.add_argument("--cpus", default="1")
    return out


def pin(cpus: str) -> None:
    """This process (and what it forks) on ``cpus``, one OpenMP thread."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])


def load_bundle(name: str) -> Any:
    """The bundle, loaded, with torch on one thread."""
    import torch

    from targets.bundles.resolve import get_bundle

    torch.set_num_threads(1)
    bundle = get_bundle(name)
    bundle.load()
    return bundle
