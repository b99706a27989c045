"""The "Lambda power tuning" section's chart, as AWS Lambda Power Tuning draws it: warm
duration (p50, with p99 markers) and cost per million invocations against memory size,
on two y axes. Drawn only when the section is there (:func:`reports.power.applies`)."""

from __future__ import annotations

from reports import power
from reports.chartbase import figure, png
from reports.schema import RunDoc

DURATION_COLOUR = "tab:blue"
COST_COLOUR = "tab:red"


def power_tuning(run: RunDoc) -> bytes:
    """Duration (left axis) and cost per million on x86_64 (right axis) per size; a
    failed size is a grey line at its memory size, with no point."""
    fig, ax = figure()
    measured = power.sizes(run)
    ok = [s for s in measured if s.failed is None]
    mb = [s.memory_mb for s in ok]
    ax.plot(mb, [s.p50_ms for s in ok], "o-", color=DURATION_COLOUR, label="duration p50")
    ax.plot(mb, [s.p99_ms for s in ok], "v", color=DURATION_COLOUR, alpha=0.6,
            label="duration p99")
    for s in measured:
        if s.failed is not None:
            ax.axvline(s.memory_mb, color="grey", linestyle=":", alpha=0.7)
            ax.annotate("failed", (s.memory_mb, 0), xycoords=("data", "axes fraction"),
                        textcoords="offset points", xytext=(2, 4), fontsize=7, color="grey")
    ax.set_xlabel("memory size (MB)")
    ax.set_ylabel("warm duration (ms)", color=DURATION_COLOUR)
    # Headroom above the slowest p99 for the legend, which sits at the top.
    tops = [v for s in ok for v in (s.p50_ms, s.p99_ms) if v is not None]
    ax.set_ylim(0, max(tops) * 1.35 if tops else 1.0)
    ax.set_xticks([s.memory_mb for s in measured])
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    cost = ax.twinx()
    cost.plot(mb, [s.cost_x86 for s in ok], "s--", color=COST_COLOUR,
              label=f"$ per million ({power.ARCH})")
    cost.set_ylabel(f"$ per million invocations ({power.ARCH})", color=COST_COLOUR)
    costs = [s.cost_x86 for s in ok if s.cost_x86 is not None]
    cost.set_ylim(0, max(costs) * 1.35 if costs else 1.0)
    lines = ax.get_legend_handles_labels()
    more = cost.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper center")
    ax.set_title("Lambda power tuning"
                 + ("" if all(s.enforced for s in measured) else " (unthrottled)"), fontsize=10)
    return png(fig, run)


def render_all(run: RunDoc) -> dict[str, bytes]:
    """The chart by name, when the run has the section (else nothing)."""
    return {"power": power_tuning(run)} if power.applies(run) else {}
