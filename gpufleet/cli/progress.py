"""Show Terraform's streamed ``-json`` events as a progress bar per stack."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from gpufleet.terraform.runner import LOCK_WAIT, lock_wait_message

_DONE = {"apply_complete", "apply_errored"}


class TerraformProgress:
    """An ``EventSink`` that advances a bar per stack as resources finish."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.fields[stack]:<16}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                 transient=False)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TerraformProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def _task(self, stack: str) -> TaskID:
        if stack not in self.tasks:
            self.tasks[stack] = self.progress.add_task("planning", stack=stack, total=None)
        return self.tasks[stack]

    def __call__(self, stack: str, event: dict[str, Any]) -> None:
        task = self._task(stack)
        kind = event.get("type")
        if kind == "change_summary":
            changes = event.get("changes", {})
            total = sum(changes.get(k, 0) for k in ("add", "change", "remove"))
            if changes.get("operation") == "plan":
                self.progress.update(task, total=total or 1, completed=0 if total else 1,
                                     description=f"{total} change(s) planned")
            else:
                self.progress.update(task, total=max(total, 1), completed=max(total, 1), description="done")
        elif kind == LOCK_WAIT:
            # A line of its own, not just the bar's description: a wait of up to a minute must say why even
            # where bars do not draw (CI logs), and one line keeps it greppable.
            self.progress.console.print(f"{stack}: {lock_wait_message(event)}", markup=False, soft_wrap=True)
            self.progress.update(task, description="waiting for the state lock")
        elif kind == "planned_change":
            current = self.progress.tasks[self.tasks[stack]].total or 0
            self.progress.update(task, total=current + 1)
        elif kind in _DONE or kind == "apply_start":
            addr = event.get("hook", {}).get("resource", {}).get("addr", "")
            verb = {"apply_start": "…", "apply_complete": "✓", "apply_errored": "✗"}[kind]
            self.progress.update(task, description=f"{verb} {addr}"[:60], advance=1 if kind in _DONE else 0)
