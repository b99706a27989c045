"""The view of a function AWS keeps in CloudWatch: one datapoint per metric per period.

Lambda publishes its function metrics at a one-minute resolution; what a team reads in
CloudWatch (a dashboard, an alarm) is a statistic of each minute, not the invocations:

* ``Invocations``, ``Errors``, ``Throttles``: Sum (counts, unit Count);
* ``Duration``: SampleCount, Sum, Minimum, Maximum and the p50 and p99 (Milliseconds);
* ``ConcurrentExecutions``: Maximum (the most environments running an invocation at once).

:class:`CloudWatchPeriods` aggregates the emulator's invocations into those periods; the
emulator (:mod:`.metrics`) writes each one as JSON lines once it has ended. Periods are
aligned on the clock (a minute starts at :00), as CloudWatch's are; an invocation is in
the period in which it ended (its REPORT line), a throttle in the one it was refused in.
Percentiles are exact (nearest rank over the period's durations), where CloudWatch's are
estimates: within its ~1% these are the same figures.

A period with no activity has no line (Lambda sends no datapoint for an idle function);
a period with any has every metric, zero counts included. The period still open when
the emulator stops is written too, marked ``"complete": false``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

#: CloudWatch's standard resolution for Lambda's metrics.
PERIOD_S = 60.0


@dataclass
class _Period:
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    durations_ms: list[float] = field(default_factory=list)
    max_concurrency: int = 0


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The ``q`` (0..1) percentile by nearest rank: the smallest value with at least
    ``q`` of the values at or below it."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class CloudWatchPeriods:
    """Invocations, throttles and concurrency, summed into ``period_s`` periods."""

    def __init__(self, function: str, period_s: float = PERIOD_S) -> None:
        if not period_s > 0:
            raise ValueError(f"a period is a positive number of seconds (got {period_s})")
        self.function = function
        self.period_s = period_s
        self._periods: dict[float, _Period] = {}
        #: Environments running an invocation now (carried into the next period).
        self._level = 0

    def _start(self, at: float) -> float:
        return math.floor(at / self.period_s) * self.period_s

    def _period(self, at: float) -> _Period:
        start = self._start(at)
        period = self._periods.get(start)
        if period is None:
            period = self._periods[start] = _Period(max_concurrency=self._level)
        return period

    def invocation(self, at: float, duration_ms: float, error: bool) -> None:
        period = self._period(at)
        period.invocations += 1
        period.errors += int(error)
        period.durations_ms.append(duration_ms)

    def throttle(self, at: float) -> None:
        self._period(at).throttles += 1

    def concurrency(self, at: float, level: int) -> None:
        """Environments running an invocation changed to ``level`` at ``at``."""
        self._level = level
        period = self._period(at) if level > 0 else self._periods.get(self._start(at))
        if period is not None:
            period.max_concurrency = max(period.max_concurrency, level)

    def due(self, now: float) -> list[dict[str, Any]]:
        """The lines of every period that has ended by ``now``, oldest first; they are
        forgotten. An invocation running across the boundary keeps the next period's
        ConcurrentExecutions at least its level."""
        current = self._start(now)
        if self._level > 0:
            self._period(now)
        ended = sorted(start for start in self._periods if start < current)
        return [line for start in ended
                for line in self._lines(start, self._periods.pop(start), complete=True)]

    def drain(self, now: float) -> list[dict[str, Any]]:
        """Every period's lines (at exit): the open one marked ``complete: false``."""
        lines = self.due(now)
        for start in sorted(self._periods):
            lines += self._lines(start, self._periods.pop(start), complete=False)
        return lines

    def _lines(self, start: float, period: _Period, complete: bool) -> list[dict[str, Any]]:
        if not (period.invocations or period.throttles or period.max_concurrency):
            return []
        stamp = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        head = {"timestamp": stamp, "period_start": start, "period_s": self.period_s,
                "function": self.function, **({} if complete else {"complete": False})}
        lines = [{**head, "metric": name, "unit": "Count", "Sum": value}
                 for name, value in (("Invocations", period.invocations),
                                     ("Errors", period.errors),
                                     ("Throttles", period.throttles))]
        if period.durations_ms:
            values = sorted(period.durations_ms)
            lines.append({**head, "metric": "Duration", "unit": "Milliseconds",
                          "SampleCount": len(values), "Sum": round(math.fsum(values), 3),
                          "Minimum": values[0], "Maximum": values[-1],
                          "p50": nearest_rank(values, 0.50), "p99": nearest_rank(values, 0.99)})
        lines.append({**head, "metric": "ConcurrentExecutions", "unit": "Count",
                      "Maximum": period.max_concurrency})
        return lines
