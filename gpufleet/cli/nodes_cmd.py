"""``gpufleet nodes configure``: run the node playbook on a team's GPU hosts with live progress."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from gpufleet.cli.context import console
from gpufleet.cli.options import handle_errors
from gpufleet.nodes.events import NodeEvent
from gpufleet.nodes.runner import PlaybookFailed, PlaybookResult, raise_for

_MARKS = {"changed": "[yellow]changed[/]", "failed": "[red]FAILED[/]", "unreachable": "[red]UNREACHABLE[/]"}


class TaskProgress:
    """Shows the running task on a status line and prints each changed or failed host result."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.status = out.status("starting ansible-playbook…")
        self.tasks = 0

    def __enter__(self) -> TaskProgress:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def __call__(self, event: NodeEvent) -> None:
        if event.host is None:
            self.tasks += 1
            self.status.update(f"task {self.tasks}: {event.task}")
            return
        mark = _MARKS.get(event.status or "")
        if mark:
            detail = f": {event.message}" if event.message else ""
            self.out.print(f"{mark} {event.host} · {event.task}{detail}", highlight=False)


def print_recap(out: Console, result: PlaybookResult, check: bool) -> None:
    table = Table(title=f"recap{' (check mode)' if check else ''}: {result.seconds:.0f} s")
    for col in ("host", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for host, r in result.recap.items():
        style = "red" if r.failed or r.unreachable else ("yellow" if r.changed else "green")
        table.add_row(host, str(r.ok), str(r.changed), str(r.failed), str(r.unreachable), str(r.skipped),
                      style=style)
    out.print(table)


@click.group()
def nodes() -> None:
    """Configure GPU hosts (NVIDIA driver, CUDA, container toolkit, agent) with Ansible."""


@nodes.command()
@click.option("--team", required=True, help="Configure this team's hosts (group team_<team>).")
@click.option("--role", type=click.Choice(["training", "serving"]), default=None,
              help="Only hosts of this role (group role_<role>).")
@click.option("--limit", default=None, help="Further narrow the hosts (an Ansible host pattern).")
@click.option("--check", is_flag=True, help="Dry run: report what would change, change nothing.")
@click.option("--tags", default=None,
              help="Only these roles, comma-separated: driver, cuda, container-toolkit, agent, verify.")
@click.option("--inventory", type=click.Path(path_type=Path), default=None,
              help="Inventory file (default: playbooks/inventory/aws_ec2.yml, the EC2 tags).")
@click.option("--wheel", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="gpufleet wheel to install (default: built from this checkout).")
@click.option("--runtime", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Team runtime JSON for the agent config (default: .gpufleet/teams/<team>.json if present).")
@handle_errors
def configure(team: str, role: str | None, limit: str | None, check: bool, tags: str | None,
              inventory: Path | None, wheel: Path | None, runtime: Path | None) -> None:
    """Run playbooks/gpu-node.yml on TEAM's hosts and print a per-host recap."""
    from gpufleet.nodes.configure import ConfigureRequest, configure_nodes, playbooks_dir
    from gpufleet.workspace import workspace

    req = ConfigureRequest(team=team, role=role, limit=limit, check=check, tags=tags, wheel=wheel, runtime=runtime,
                           inventory=inventory or playbooks_dir() / "inventory" / "aws_ec2.yml",
                           workspace=workspace())
    command = "gpufleet nodes configure " + " ".join(
        f"--{k} {v}" for k, v in (("team", team), ("role", role), ("limit", limit), ("tags", tags)) if v)
    try:
        with TaskProgress(console) as progress:
            result = configure_nodes(req, progress)
        raise_for(result, command)
    except PlaybookFailed as exc:
        print_recap(console, exc.result, check)
        raise
    print_recap(console, result, check)
