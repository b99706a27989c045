"""Render a run folder's reports from its ``run.json``: report.md, report.html, charts/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reports import charts, document, html, markdown, monitorchart, powerchart
from reports.schema import RunDoc, load_run
from targets.files import atomic_write_bytes

CHART_DIR = "charts"


@dataclass(frozen=True)
class Rendered:
    markdown: Path
    html: Path
    charts: tuple[Path, ...]


def render_run_dir(run_dir: Path, run: RunDoc | None = None) -> Rendered:
    run = run if run is not None else load_run(run_dir)
    blocks = document.build(run)
    # The power and monitoring charts live apart from reports.charts (at its size limit).
    images = {**charts.render_all(run), **powerchart.render_all(run),
              **monitorchart.render_all(run)}
    chart_dir = run_dir / CHART_DIR
    chart_dir.mkdir(exist_ok=True)
    chart_paths = {}
    written = []
    for name, png in images.items():
        path = chart_dir / f"{name}.png"
        atomic_write_bytes(path, png)
        written.append(path)
        chart_paths[name] = f"{CHART_DIR}/{name}.png"
    md_path = run_dir / "report.md"
    atomic_write_bytes(md_path, markdown.render(blocks, chart_paths).encode())
    title = f"deploybench: {run['bundle'].get('name')} / {run['scenario'].get('name')}"
    html_path = run_dir / "report.html"
    atomic_write_bytes(html_path, html.render(blocks, images, title).encode())
    return Rendered(md_path, html_path, tuple(written))
