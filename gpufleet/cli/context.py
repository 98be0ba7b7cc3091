"""What every CLI command resolves first: the config, the workspace and the deploy target."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from gpufleet.local import emulator
from gpufleet.target import Target, aws_target, local_target, target_kind
from gpufleet.teams import TEAM_ENV
from gpufleet.workspace import state_dir, workspace

console = Console(stderr=True, highlight=False)

team_option = click.option("--team", default=None,
                           help=f"Team (default: ${TEAM_ENV}, or the only deployed team).")


def resolve_target(target: str | None, for_deploy: bool, root: Path | None = None) -> Target:
    """The deploy target. Local deploys start the emulator when it is not running yet."""
    ws = workspace(root)
    if target_kind(target) == "aws":
        return aws_target(state_dir(ws))
    emu = emulator.find(ws)
    if emu is None and for_deploy:
        console.print("[dim]local cloud: starting the emulated AWS (moto server)…[/]")
        emu = emulator.start(ws)
    return local_target(state_dir(ws), emu.endpoint if emu else None)


def print_phase_table(title: str, phases: dict[str, float]) -> None:
    """Seconds per phase, as the demo and the DR drill report them."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    for name, seconds in phases.items():
        table.add_row(name, f"{seconds:.1f}")
    console.print(table)
