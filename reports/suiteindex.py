"""A suite's index report (suite.md, suite.html, charts/): per bundle, every cell's
decision side by side, a chart of capacity and p99 per deployment and option, and a
summary in words of which deployment wins for which model and why."""

from __future__ import annotations

from pathlib import Path


def render_suite_dir(suite_dir: Path) -> tuple[Path, Path]:
    """Write the index of ``suite_dir`` from its manifest and its cells' run.json; returns
    (suite.md, suite.html)."""
    raise NotImplementedError("the suite index: being built (issue 23)")
