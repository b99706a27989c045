"""Which results measured one deployment in several monitoring modes (``run
--monitoring``, the ``monitoring`` scenario; issue 22), and which of them the decision
weighs.

A result records its ``monitoring`` mode ("off", "metrics", "log", "metrics+log"; absent
in older runs: off) beside ``deployment``, ``encoding`` and ``batching``, and is named
``NAME+MODE`` (``flask+metrics``, ``flask+batch+metrics+log``). Results of one
deployment, encoding and batching are one *group*: the same deployment watched more or
less closely, not deployments competing with each other. The decision weighs each group
by its lightest mode measured (off when it was), and the section "What monitoring costs"
compares the modes within it.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.schema import RunDoc, TargetResult, deployment
from targets.monitoring import MODES, OFF

#: Group key: (the result's name less its mode, deployment, encoding, batching): the name
#: tells apart what the three do not (Lambda's memory sizes: lambda-512, lambda-1769).
GroupKey = tuple[str, str, str | None, str | None]


def mode(t: TargetResult) -> str:
    """A result's monitoring mode; "off" for a run from before monitoring existed."""
    return t.get("monitoring") or OFF.mode


def key(t: TargetResult) -> GroupKey:
    return label(t), deployment(t), t.get("encoding"), t.get("batching") or None


def measured(t: TargetResult) -> bool:
    return t["status"] == "ok" and any(s["latency_ms"] for s in t["stages"])


def _order(m: str) -> int:
    return MODES.index(m) if m in MODES else len(MODES)


def label(t: TargetResult) -> str:
    """The deployment a result monitored, by name: ``flask+batch`` for
    ``flask+batch+metrics``."""
    m = mode(t)
    return t["name"] if m == OFF.mode else t["name"].removesuffix("+" + m)


@dataclass(frozen=True)
class Group:
    """One deployment (and encoding, and batching) measured in several modes."""

    label: str
    #: Its measured results by mode, lightest first (off, metrics, log, metrics+log).
    results: dict[str, TargetResult]
    #: Its results that were not measured (they failed), by name.
    failed: tuple[str, ...] = ()

    @property
    def base(self) -> TargetResult:
        """The result the others are compared with: off when measured, else the
        lightest mode measured."""
        return next(iter(self.results.values()))


def groups(run: RunDoc) -> list[Group]:
    """Each deployment measured in two or more modes, in the run's order."""
    found: dict[GroupKey, list[TargetResult]] = {}
    failed: dict[GroupKey, list[str]] = {}
    for t in run["targets"]:
        if measured(t):
            found.setdefault(key(t), []).append(t)
        else:
            failed.setdefault(key(t), []).append(t["name"])
    out = []
    for k, results in found.items():
        by_mode = {mode(t): t for t in sorted(results, key=lambda t: _order(mode(t)))}
        if len(by_mode) >= 2:
            out.append(Group(k[0], by_mode, tuple(failed.get(k, []))))
    return out


def set_aside(run: RunDoc) -> dict[str, str]:
    """The results the decision leaves out, each with the result it weighs instead: in a
    group, every mode but the lightest measured (a deployment is chosen on its own
    figures; what watching it costs is a section of its own)."""
    out = {}
    for g in groups(run):
        for t in list(g.results.values())[1:]:
            out[t["name"]] = g.base["name"]
    return out
