"""The handler's log of live predictions (``--log-predictions RATE``), inside Lambda.

The emulator hands every environment the rate and the folder in two environment
variables (as a function's configuration would); the handler opens one
:class:`targets.predlog.PredictionLog` per environment (``predictions-PID.sqlite``) in
its Init and records each successful prediction *inside the invocation*, committed
before the answer is returned (``synchronous=True``). A Lambda environment is frozen as
soon as it has answered and may be killed frozen: a background writer would get no CPU
time, and rows waiting in memory would be lost. The commit is in the function's
Duration, so it is billed: part of what logging costs on Lambda. The store is in WAL
mode: a commit is in the database's files once the transaction returns, so an
environment killed afterwards (reaped, timed out, OOM-killed) loses nothing committed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from targets.monitoring import Monitoring

if TYPE_CHECKING:
    from targets.bundles.protocol import Bundle
    from targets.predlog import PredictionLog

#: The fraction of requests to log (absent or 0: off) and the folder of the log.
LOG_RATE_ENV = "DEPLOYBENCH_LOG_PREDICTIONS"
LOG_DIR_ENV = "DEPLOYBENCH_PREDICTION_LOG_DIR"


def open_log(bundle: Bundle) -> PredictionLog | None:
    """The environment's prediction log as its configuration asks (None: off). Raises
    ValueError for a rate or folder that cannot be used: a failed Init, as on AWS."""
    text = os.environ.get(LOG_RATE_ENV, "").strip()
    rate = Monitoring(log_rate=float(text)).log_rate if text else 0.0
    if not rate:
        return None
    folder = os.environ.get(LOG_DIR_ENV, "").strip()
    if not folder:
        raise ValueError(f"{LOG_RATE_ENV}={text} needs {LOG_DIR_ENV}, the log's folder")
    # Only when logging: sqlite3's import (~2.5 ms) would lengthen every cold start's Init.
    from targets.predlog import PredictionLog, model_version  # noqa: PLC0415

    return PredictionLog(folder, rate, bundle.name, model_version(bundle.name, bundle.info()),
                         synchronous=True)
