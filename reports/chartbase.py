"""What every chart shares: its size and resolution, a fresh figure with matplotlib's Agg
backend (imported lazily: it is slow to import, and charts render on machines with no
display), and the PNG it becomes, marked SIMULATED when the run was."""

from __future__ import annotations

import io
from typing import Any

from reports.schema import RunDoc, simulated_targets

DPI = 110
SIZE = (7.0, 4.2)


def figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def png(fig: Any, run: RunDoc) -> bytes:
    return png_of(fig, bool(simulated_targets(run)))


def png_of(fig: Any, simulated: bool) -> bytes:
    """The figure as PNG bytes, marked SIMULATED when it is; the figure is closed."""
    import matplotlib.pyplot as plt

    if simulated:  # on the chart itself: it may be shown alone
        fig.text(0.5, 0.5, "SIMULATED", fontsize=48, color="crimson", alpha=0.18,
                 ha="center", va="center", rotation=20)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
