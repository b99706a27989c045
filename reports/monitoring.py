"""The report's two monitoring sections (issue 22), in the order the report shows them:
what monitoring costs each deployment (reports.monitorcost), then whether the targets'
own metrics agreed with the load generator (reports.monitorcheck)."""

from __future__ import annotations

from reports import monitorcheck, monitorcost, monitormodes
from reports.blocks import Block
from reports.schema import RunDoc


def blocks(run: RunDoc) -> list[Block]:
    return [*monitorcost.blocks(run), *monitorcheck.blocks(run)]


def set_aside(run: RunDoc) -> dict[str, str]:
    """The results that measured a deployment in a heavier monitoring mode than another
    result of the run (reports.monitormodes.set_aside): compared in their own section,
    not with other deployments."""
    return monitormodes.set_aside(run)
