"""ansible-runner's job events, reduced to what an operator reads: task progress, failures, recap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "changed", "skipped", "failed", "unreachable"]

_RESULT_EVENTS: dict[str, Status] = {
    "runner_on_ok": "ok",
    "runner_on_skipped": "skipped",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
}


@dataclass(frozen=True)
class NodeEvent:
    """One step of a playbook run: a task starting (host is None) or one host's result of it."""

    task: str
    host: str | None = None
    status: Status | None = None
    message: str = ""


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False

    def describe(self) -> str:
        what = "is unreachable" if self.unreachable else f"failed at task '{self.task}'"
        return f"{self.host} {what}: {self.message}"


@dataclass(frozen=True)
class HostRecap:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


def failure_message(res: dict[str, Any]) -> str:
    """The most useful line of a failed result: a loop's failed item, msg, then stderr."""
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            return failure_message(item)
    parts = [str(res.get(key) or "").strip() for key in ("msg", "stderr", "module_stderr", "stdout")]
    message = next((p for p in parts if p), "no message (rerun with -vvv)")
    if res.get("rc") and parts[3] and parts[3] not in message:
        # apt and commands explain themselves at the end of stdout (e.g. unmet dependencies).
        message += " | " + " ".join(parts[3].splitlines()[-5:])
    return " ".join(message.split())[:2000]


def node_event(event: dict[str, Any]) -> NodeEvent | None:
    """The operator-facing view of a job event, or None for events an operator does not need."""
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if kind == "playbook_on_task_start":
        return NodeEvent(task=str(data.get("task", "")))
    status = _RESULT_EVENTS.get(kind)
    if status is None or data.get("ignore_errors"):
        return None
    res = data.get("res") or {}
    if status == "ok" and res.get("changed"):
        status = "changed"
    message = failure_message(res) if status in ("failed", "unreachable") else ""
    return NodeEvent(task=str(data.get("task", "")), host=str(data.get("host", "")), status=status,
                     message=message)


def recap_from_stats(data: dict[str, Any]) -> dict[str, HostRecap]:
    """Per-host counts from a ``playbook_on_stats`` event's data."""
    fields = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
              "skipped": "skipped"}
    hosts = sorted({h for key in fields for h in (data.get(key) or {})})
    return {h: HostRecap(**{ours: int((data.get(theirs) or {}).get(h, 0)) for theirs, ours in fields.items()})
            for h in hosts}
