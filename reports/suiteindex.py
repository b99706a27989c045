"""A suite's index report (suite.md, suite.html, charts/): per bundle, every cell's
decision side by side, a chart of capacity and p99 per deployment and option, and a
summary in words of which deployment wins for which model and why.

Read from files alone (the manifest and each cell's run.json), so an index can be
re-rendered at any time; a cell whose run.json is missing or unreadable is listed with its
status and why, never a crash."""

from __future__ import annotations

import re
from pathlib import Path

from reports import html, markdown, suitechart, suitesummary, suitetables
from reports.blocks import Block, Bullets, Chart, Heading, Paragraph
from reports.suitecells import SuiteCell, by_bundle, load_cells
from reports.suiteschema import SuiteManifest, load_manifest
from targets.files import atomic_write_bytes

CHART_DIR = "charts"
INDEX_MD = "suite.md"
INDEX_HTML = "suite.html"


def chart_name(bundle: str) -> str:
    return "suite-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", bundle)


def _matrix_keys(cells: list[SuiteCell]) -> list[str]:
    keys: list[str] = []
    for c in cells:
        keys += [k for k in c.record["matrix"] if k not in keys]
    return keys


def build(manifest: SuiteManifest, cells: list[SuiteCell],
          charts: dict[str, bytes]) -> list[Block]:
    bundles = by_bundle(cells)
    blocks = suitetables.header(manifest, cells)
    blocks.append(Heading("Summary"))
    for bundle, group in bundles.items():
        items = suitesummary.bundle_items(group)
        lead = suitesummary.headline(bundle, group)
        blocks += [Heading(f"`{bundle}`", 3), *([Paragraph(lead)] if lead else []),
                   Bullets(tuple(items)) if items
                   else Paragraph("No cell of it has a run to read.")]
    for bundle, group in bundles.items():
        blocks += [Heading(f"Bundle `{bundle}`"),
                   suitetables.decision_table(group, _matrix_keys(group))]
        if any(c.decision is not None for c in group):
            blocks.append(suitetables.figures_table(group))
        name = chart_name(bundle)
        if name in charts:
            blocks.append(Chart(name, f"{bundle}: capacity within the objective and p99 at "
                                      "the common load, per deployment and cell",
                                f"{bundle}: capacity and p99 per deployment and cell"))
    return blocks + suitetables.unfinished(cells)


def render_suite_dir(suite_dir: Path) -> tuple[Path, Path]:
    """Write the index of ``suite_dir`` from its manifest and its cells' run.json; returns
    (suite.md, suite.html). SuiteError when the folder has no readable manifest."""
    manifest = load_manifest(suite_dir)
    cells = load_cells(suite_dir, manifest)
    images = {}
    for bundle, group in by_bundle(cells).items():
        png = suitechart.render(group)
        if png is not None:
            images[chart_name(bundle)] = png
    blocks = build(manifest, cells, images)
    chart_dir = suite_dir / CHART_DIR
    paths = {}
    if images:
        chart_dir.mkdir(exist_ok=True)
    for name, png in images.items():
        atomic_write_bytes(chart_dir / f"{name}.png", png)
        paths[name] = f"{CHART_DIR}/{name}.png"
    md_path = suite_dir / INDEX_MD
    atomic_write_bytes(md_path, markdown.render(blocks, paths).encode())
    html_path = suite_dir / INDEX_HTML
    atomic_write_bytes(html_path, html.render(
        blocks, images, f"deploybench suite: {manifest['name']}").encode())
    return md_path, html_path
