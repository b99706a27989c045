"""What /proc says about an environment's process."""

from __future__ import annotations

import contextlib
from pathlib import Path


def process_cpu_ms(pid: int) -> float | None:
    """CPU time every thread of ``pid`` has run, to the nanosecond (the first field of
    each ``/proc/PID/task/TID/schedstat``; ``/proc/PID/stat`` counts 10 ms ticks)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):  # a thread just ended
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return None
    return total / 1e6
