"""Console exporter: the per-target stage tables, the summary and the decision, with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable

from reports import decision, document, findings, stagetables, summary
from reports.schema import RunDoc


def _plain(text: str) -> str:
    return text.replace("**", "").replace("`", "")


def print_run(run: RunDoc, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or file: do not squeeze tables into 80 columns
            console = Console(width=140)
    for t in run["targets"]:
        if t["status"] != "ok":
            console.print(f"[bold red]{t['name']}[/bold red] failed: {t['error']}")
            continue
        if not t["stages"]:
            continue
        block = stagetables.stage_table(t)
        table = RichTable(title=f"{t['name']} ({run['bundle'].get('name')})", title_justify="left")
        for i, header in enumerate(block.headers):
            table.add_column(header, justify="right" if i in block.numeric else "left")
        for row in block.rows:
            table.add_row(*row)
        console.print(table)
    for item in document.summary_items(run):
        console.print(f"- {_plain(item)}")
    for item in document.validity_items(run):
        console.print(f"[bold red]INVALID[/bold red] {_plain(item)}")
    for warning in findings.warnings(run):
        console.print(f"[yellow]warning:[/yellow] {_plain(warning)}")
    # The decision last, where the eye lands when the run ends.
    choice = decision.decide(run)
    console.print(f"\n[bold]Decision[/bold]: {_plain(summary.objective_text(run, choice))}")
    for item in summary.decision_items(choice):
        console.print(f"- {_plain(item)}")
