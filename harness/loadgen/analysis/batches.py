"""A stage's batches, from a batched result's batch log (``run --batching``).

Each server process that batches logs one line per forward pass (targets.batching): its
wall-clock time and the requests it served. A stage counts the passes logged in its kept
measurement windows, ``[window_start, window_end)``: the span of its ``requests``,
``rps`` and latencies, so the mean batch size is of the load those figures describe.
"""

from __future__ import annotations

import numpy as np

from reports.stageblocks import BatchingBlock
from targets.batching import sizes_between


def summarize_batches(log: np.ndarray, window_start: float,
                      window_end: float) -> BatchingBlock:
    """The forward passes of ``log`` (read_batch_log's rows) in the window, by size."""
    sizes = sizes_between(log, window_start, window_end)
    batches = sum(sizes.values())
    requests = sum(size * count for size, count in sizes.items())
    return {"sizes": {str(size): count for size, count in sorted(sizes.items())},
            "batches": batches, "requests": requests,
            "mean_size": requests / batches if batches else None}
