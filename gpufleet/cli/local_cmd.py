"""``gpufleet local up|down|status``: the embedded local cloud."""

from __future__ import annotations

import json
import shutil

import click

from gpufleet.cli.context import console
from gpufleet.local import emulator
from gpufleet.local.workspace import workspace


@click.group()
def local() -> None:
    """Run the platform on this machine against an emulated AWS (moto server)."""


@local.command()
def up() -> None:
    """Start the emulated AWS and keep it running across CLI calls."""
    from gpufleet.terraform.cliconfig import write_cli_config

    ws = workspace()
    emu = emulator.start(ws)
    console.print(f"local cloud: emulated AWS at {emu.endpoint} (pid {emu.pid}); state in {ws}")
    console.print(f"for the cdktf CLI: export TF_CLI_CONFIG_FILE={write_cli_config(ws)}")


@local.command()
def down() -> None:
    """Stop the emulated AWS and remove everything local mode made under .gpufleet/."""
    ws = workspace()
    was_running = emulator.stop(ws)
    if ws.exists():
        shutil.rmtree(ws)
    console.print("local cloud: stopped and removed" if was_running else "local cloud: was not running; cleaned up")


@local.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Show whether the emulated AWS is running."""
    emu = emulator.find(workspace())
    if as_json:
        click.echo(json.dumps({"running": bool(emu), "endpoint": emu.endpoint if emu else None}))
    elif emu:
        console.print(f"local cloud: running at {emu.endpoint} (pid {emu.pid})")
    else:
        console.print("local cloud: not running (start it with `gpufleet local up`)")
