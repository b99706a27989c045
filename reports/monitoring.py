"""The report's two monitoring sections (issue 22), in the order the report shows them:
what monitoring costs each deployment (reports.monitorcost), then whether the targets'
own metrics agreed with the load generator (reports.monitorcheck)."""

from __future__ import annotations

from reports import monitorcheck, monitorcost
from reports.blocks import Block
from reports.schema import RunDoc


def blocks(run: RunDoc) -> list[Block]:
    return [*monitorcost.blocks(run), *monitorcheck.blocks(run)]
