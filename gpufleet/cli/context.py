"""What every CLI command resolves first: the config, the workspace and the deploy target."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from gpufleet.local import emulator
from gpufleet.local.workspace import state_dir, workspace
from gpufleet.target import Target, aws_target, local_target, target_kind

console = Console(stderr=True, highlight=False)


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
