"""A container's reaper: removes it once the process that started it is gone.

A served target's processes die with the orchestrator (PR_SET_PDEATHSIG), but a
container is the Docker daemon's child, not ours: an orchestrator killed outright (a
second Ctrl-C, SIGKILL, the OOM killer) would leave it running. Each container therefore
gets this small process, in a session of its own (a Ctrl-C at the terminal does not
reach it), which waits for the orchestrator (its PID *and* start time, so a reused PID
does not fool it) to end, then removes the container, found by its own label (the
reaper starts before the container is created, so one killed in between is covered).
When the orchestrator stops the container itself, it stops the reaper by PID.

    python -m targets.runtimes.reaper OWNER_PID OWNER_START_TIME INSTANCE
"""

from __future__ import annotations

import contextlib
import sys
import time

import psutil

from targets.runtimes.container import INSTANCE_LABEL, client

#: How often the owner is looked at: a container outlives a killed run by about this.
POLL_S = 0.5


def owner_alive(pid: int, start_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return bool(abs(proc.create_time() - start_time) < 0.01
                    and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    pid, start_time, instance = int(args[0]), float(args[1]), args[2]

    engine = client()
    while owner_alive(pid, start_time):
        time.sleep(POLL_S)
    with contextlib.suppress(Exception):  # none, or already gone: nothing to do
        for container in engine.containers.list(
                all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"},
                ignore_removed=True):
            container.remove(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
