"""What a Lambda memory size buys, as AWS sizes it, and how faithfully this machine
gives it (the contract between the emulator, the harness and the report).

On AWS the memory size (128 to 10,240 MB) also buys CPU, in proportion: 1,769 MB is one
vCPU, 10,240 MB is about 5.8 (AWS: "up to 6 vCPUs"); less than 1,769 MB is a fraction of
one. An environment that uses more than its memory size is killed
(``Runtime.ExitError``, "signal: killed"), and an idle one is frozen: its background
threads do not run between invocations.

The emulator enforces what it can with the kernel (a cgroup per environment: CPU quota,
memory limit, freezer) and says what it could not in a :data:`Sandbox` description, which
reaches the run's results as ``describe["sandbox"]`` so the report can mark results that
ran unthrottled.
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict

#: The memory size at which Lambda gives a function one full vCPU.
ONE_VCPU_MB = 1769
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10240
#: AWS: "up to 6 vCPUs" at 10,240 MB.
MAX_VCPUS = 6

#: How a limit is enforced: by a cgroup (v1 or v2 hierarchy), by signals (the freeze
#: only: SIGSTOP/SIGCONT of the environment's process group), or not at all.
Mechanism = Literal["cgroup-v1", "cgroup-v2", "sigstop", "none"]


class Sandbox(TypedDict):
    """How one function's environments were shaped (the emulator's ``stats`` and the
    result's ``describe["sandbox"]``)."""

    memory_mb: int
    #: CPUs each environment may use, as AWS gives them: memory_mb / 1,769.
    cpu_share: float
    #: CPUs each environment could actually use here: cpu_share, capped by the target
    #: CPUs (a 3,008 MB function on one target CPU gets one CPU, not 1.7).
    cpu_share_effective: float
    cpu: Mechanism
    memory: Mechanism
    freeze: Mechanism
    #: CPU share and memory limit both enforced by the kernel. False: the results are
    #: "unthrottled" (every environment ran at the full speed of the target CPUs and could
    #: use any memory) and the report says so.
    enforced: bool
    #: Why something is not enforced (no cgroup access, docker runtime, ...); None if all is.
    reason: str | None


def cpu_share(memory_mb: int) -> float:
    """CPUs a function of ``memory_mb`` gets on AWS: proportional, one at 1,769 MB."""
    return min(memory_mb / ONE_VCPU_MB, float(MAX_VCPUS))


def visible_vcpus(memory_mb: int) -> int:
    """Cores the environment sees (``nproc``): 1 up to 1,769 MB, 2 up to 3,538 MB, ...,
    6 at 10,240 MB (AWS's re:Invent 2020 table; shared/research section 8)."""
    return max(1, min(MAX_VCPUS, math.ceil(memory_mb / ONE_VCPU_MB)))


def check_memory_mb(memory_mb: int) -> int:
    """``memory_mb`` if AWS allows it (128 to 10,240 MB); ValueError saying so if not."""
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ValueError(f"a Lambda memory size is {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MB "
                         f"(got {memory_mb})")
    return memory_mb
