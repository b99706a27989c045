"""What the Locust master and its workers say to each other (see :mod:`.master`): the
message names, the sample columns they carry, the timings both sides keep, the master's
address."""

from __future__ import annotations

#: How often a worker sends the samples recorded since its last message.
PUSH_INTERVAL_S = 0.2
#: The master measures a window this long after its edge, when every worker has pushed
#: what completed before it (a push is at most one interval late, plus transit).
FLUSH_DELAY_S = 2 * PUSH_INTERVAL_S + 0.1
#: The master waits this much longer than the workers' own drain timeout for their
#: reports (they start draining when its message arrives).
DRAIN_MARGIN_S = 5.0
WORKER_CONNECT_TIMEOUT_S = 60.0
#: How long connected workers may take to build their users from the plan.
PLAN_TIMEOUT_S = 30.0
#: How often the plan is sent again to a worker that has not taken it (see _send_plan).
PLAN_RESEND_S = 1.0
#: A worker started by hand waits this long after a job before looking for the next
#: target's master (so it does not greet the one that is shutting down).
QUIT_GRACE_S = 2.0
DEFAULT_MASTER_PORT = 5557
RESET, DRAIN, SAMPLES, DRAINED = "db_reset", "db_drain", "db_samples", "db_drained"
PLAN, READY = "db_plan", "db_ready"
ARRAYS = (("start_s", "d"), ("latency_ms", "d"), ("ok", "b"), ("cold", "b"),
          ("send_delay_ms", "d"), ("queued", "b"))



def parse_master(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError says what to write."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:{DEFAULT_MASTER_PORT}, or "
                         f"0.0.0.0:{DEFAULT_MASTER_PORT} to let other machines' workers in)")
    return host.strip("[]"), int(port)
