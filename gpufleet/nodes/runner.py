"""Run a playbook through ansible-runner, streaming events, and reduce the run to a result."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.errors import RuntimeFailure
from gpufleet.nodes.events import HostRecap, NodeEvent, TaskFailure, node_event, recap_from_stats

EventSink = Callable[[NodeEvent], None]


@dataclass(frozen=True)
class PlaybookRun:
    """Everything one ansible-playbook invocation needs."""

    project_dir: Path             # holds the playbook, its roles/ and ansible.cfg
    playbook: str
    inventory: Path
    limit: str | None = None
    extravars: Mapping[str, Any] = field(default_factory=dict)
    check: bool = False
    tags: str | None = None        # comma-separated role tags (driver, cuda, container-toolkit, agent, verify)
    envvars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlaybookResult:
    status: str                   # ansible-runner's: successful, failed, timeout, canceled
    rc: int
    recap: dict[str, HostRecap]
    failures: list[TaskFailure]
    seconds: float
    errors: list[str] = field(default_factory=list)   # ansible-playbook's own [ERROR] lines

    @property
    def matched_no_hosts(self) -> bool:
        return any("no hosts to target" in e for e in self.errors)

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.recap.values())


class PlaybookFailed(RuntimeFailure):
    """The playbook failed on at least one host; carries the result for the recap."""

    def __init__(self, result: PlaybookResult, command: str) -> None:
        self.result = result
        first = result.failures[0] if result.failures else None
        others = len(result.failures) - 1
        message = first.describe() if first else (
            result.errors[-1] if result.errors else f"ansible-playbook ended {result.status} (rc {result.rc})")
        if others > 0:
            message += f" (and {others} more failure(s), see the recap)"
        host = first.host if first else "playbook"
        super().__init__(f"configure {host}", message, f"fix the cause and rerun `{command}`")


class _Collector:
    """ansible-runner's event handler: forwards progress and keeps failures and the recap."""

    def __init__(self, sink: EventSink | None) -> None:
        self.sink = sink
        self.failures: list[TaskFailure] = []
        self.recap: dict[str, HostRecap] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_stats":
            self.recap = recap_from_stats(event.get("event_data") or {})
        view = node_event(event)
        if view is not None:
            if view.status in ("failed", "unreachable") and view.host:
                self.failures.append(TaskFailure(view.host, view.task, view.message,
                                                 unreachable=view.status == "unreachable"))
            if self.sink is not None:
                self.sink(view)
        return True  # keep the event in the artifacts for `--debug` inspection


def run_playbook(run: PlaybookRun, sink: EventSink | None = None) -> PlaybookResult:
    """Run ``run.playbook``; return its result. Does not raise on host failures: see ``raise_for``."""
    import ansible_runner  # heavy; only the nodes commands need it

    if shutil.which("ansible-playbook") is None:
        raise RuntimeFailure("nodes", "ansible-playbook is not on PATH",
                             "install the nodes extra: pip install 'gpufleet[nodes]'")
    collector = _Collector(sink)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpufleet-ansible-") as private:
        env = {"ANSIBLE_CONFIG": str(run.project_dir / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               **{k: v for k, v in os.environ.items() if k.startswith(("ANSIBLE_", "AWS_"))},
               **run.envvars}
        runner = ansible_runner.run(
            private_data_dir=private, project_dir=str(run.project_dir), playbook=run.playbook,
            inventory=str(run.inventory.absolute()), limit=run.limit, extravars=dict(run.extravars),
            cmdline="--check --diff" if run.check else None, tags=run.tags, envvars=env, event_handler=collector,
            quiet=True, suppress_env_files=True,
        )
        status, rc = str(runner.status), int(runner.rc if runner.rc is not None else -1)
        errors = _error_lines(runner.stdout.read() if collector.recap == {} else "")
    return PlaybookResult(status=status, rc=rc, recap=collector.recap, failures=collector.failures,
                          seconds=time.monotonic() - started, errors=errors)


def _error_lines(output: str) -> list[str]:
    """ansible-playbook's errors before any play ran: bad inventory, pattern or syntax."""
    return [" ".join(line.split(":", 1)[1].split()) for line in output.splitlines()
            if line.startswith(("[ERROR]:", "ERROR!"))]


def raise_for(result: PlaybookResult, command: str) -> None:
    """Raise ``PlaybookFailed`` naming the first failed host, task and message."""
    if result.failures or result.rc != 0 or result.status != "successful":
        raise PlaybookFailed(result, command)
