"""Progress on the console while a run goes: one bar per target, advancing per stage phase."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from harness.results import TargetResult


class ConsoleObserver:
    """Shows progress on stderr; stdout stays for the results table."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.fields[target]:<10}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} stages"),
            TextColumn("{task.fields[phase]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            # The orchestrator shares the load generator's CPUs: redraw rarely.
            refresh_per_second=2,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ConsoleObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def message(self, text: str) -> None:
        self.progress.console.print(f"[dim]{text}[/dim]")

    def target_started(self, name: str, stages: int, seconds: float) -> None:
        self._tasks[name] = self.progress.add_task(
            name, total=stages, target=name, phase=f"starting (~{seconds:.0f} s of load)"
        )

    def load_event(self, name: str, event: dict[str, Any]) -> None:
        task = self._tasks.get(name)
        if task is None:
            return
        if event.get("event") == "ready":
            self.progress.update(task, phase="load generator ready")
        elif event.get("event") == "target_died":
            self.progress.update(task, phase="[red]the target died[/red]; ending the stage")
        elif event.get("event") == "waiting":
            self.progress.update(
                task, phase=f"waiting for load-generator workers at {event.get('master')}: "
                            f"{event.get('connected')} of {event.get('expected')} connected")
        elif event.get("event") == "stage":
            phase = event.get("phase", "")
            users = event.get("concurrency")
            rate = event.get("rate")
            load = (f"{users} users" if users is not None
                    else f"{rate:,.0f}/s" if rate is not None else "the timeline")
            label = f"{phase} at {load}"
            if phase == "measure" and event.get("window"):
                label += f" (window {event['window']}, at most {event.get('of')})"
            elif phase == "measure" and event.get("segment"):  # a timeline's segment
                label += (f" ({event.get('label')}: segment {event['segment']} of "
                          f"{event.get('of')})")
            if phase == "done":
                self.progress.advance(task)
                label = f"{load}: {event.get('requests', 0)} requests"
                if event.get("stable") is False:
                    label += " [unstable]"
            self.progress.update(task, phase=label)

    def target_finished(self, result: TargetResult) -> None:
        task = self._tasks.get(result["name"])
        if task is not None:
            phase = "done" if result["status"] == "ok" else "[red]failed[/red]"
            self.progress.update(task, phase=phase)
        if result["error"]:
            self.progress.console.print(f"[red]{result['name']} failed:[/red] {result['error']}")

