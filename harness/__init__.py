"""The orchestrator and the ``deploybench`` CLI.

Plain Python on purpose: it starts targets and the load generator as separate processes,
reads their results back as files, computes statistics from raw samples, and writes
result files that reports are rendered from.
"""

__version__ = "0.1.0"
