"""The format-neutral blocks a report is made of; each exporter renders every kind."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: Columns to right-align (numbers).
    numeric: frozenset[int] = field(default_factory=frozenset)
    caption: str = ""


@dataclass(frozen=True)
class Chart:
    name: str  # the key in reports.charts.CHARTS
    title: str
    alt: str


Block = Heading | Paragraph | Bullets | Table | Chart
