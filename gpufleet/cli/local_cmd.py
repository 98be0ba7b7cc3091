"""``gpufleet local up|down|status``: the embedded local cloud."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from gpufleet.cli.context import console
from gpufleet.cli.options import config_option, handle_errors, json_option
from gpufleet.config import DEFAULT_CONFIG, load_config
from gpufleet.local import cloud, emulator
from gpufleet.local.instances import read_instances
from gpufleet.workspace import teams_dir, workspace


@click.group()
def local() -> None:
    """Run the platform on this machine against an emulated AWS (moto server)."""


@local.command()
@config_option
@click.option("--no-deploy", is_flag=True, help="Only start the emulator and the local cloud.")
@handle_errors
def up(config_path: Path, no_deploy: bool) -> None:
    """Start the emulated AWS, deploy the platform and teams with Terraform, and start the local fleet."""
    from gpufleet.cli.progress import TerraformProgress
    from gpufleet.local.differences import print_local_differences
    from gpufleet.local.lifecycle import local_up
    from gpufleet.terraform.cliconfig import write_cli_config

    ws = workspace()
    cfg = None
    if not no_deploy:
        if not config_path.exists() and str(config_path) == DEFAULT_CONFIG:
            console.print(f"[yellow]no {DEFAULT_CONFIG} here[/]: starting the local cloud without stacks "
                          "(copy examples/gpufleet.yaml, then run `gpufleet local up` again to deploy it)")
        else:
            cfg = load_config(config_path)
            print_local_differences(console)
    with TerraformProgress(console) as progress:
        result = local_up(ws, cfg, progress)
    console.print(f"local cloud: emulated AWS at {result.emulator.endpoint} (pid {result.emulator.pid}), "
                  f"local fleet pid {result.cloud.pid}; state in {ws}")
    if cfg is not None:
        console.print(f"deployed {len(result.outcomes)} stack(s) in {result.seconds.get('stacks', 0):.0f} s; "
                      "agents start as ASGs ask for them (`gpufleet fleet status`)")
    console.print(f"for the cdktf CLI: export TF_CLI_CONFIG_FILE={write_cli_config(ws)}")
    console.print("stop it and remove everything with `gpufleet local down`")


@local.command()
@handle_errors
def down() -> None:
    """Stop the agents, the local fleet and the emulated AWS, and remove everything under .gpufleet/."""
    from gpufleet.local.lifecycle import local_down

    was_running = local_down(workspace())
    console.print("local cloud: stopped and removed" if was_running else "local cloud: was not running; cleaned up")


@local.command()
@json_option
@handle_errors
def status(as_json: bool) -> None:
    """Show the emulated AWS, the local fleet process, deployed teams, agents and endpoint URLs."""
    ws = workspace()
    emu, rec = emulator.find(ws), cloud.find(ws)
    teams = sorted(p.stem for p in teams_dir(ws).glob("*.json"))
    agents = read_instances(ws)
    routers = cloud.router_urls(ws)
    doc = {"running": bool(emu), "endpoint": emu.endpoint if emu else None, "cloud_pid": rec.pid if rec else None,
           "teams": teams, "agents": len(agents), "routers": routers}
    if as_json:
        click.echo(json.dumps(doc))
        return
    if not emu:
        console.print("local cloud: not running (start it with `gpufleet local up`)")
        return
    console.print(f"local cloud: emulated AWS at {emu.endpoint} (pid {emu.pid}); local fleet "
                  + (f"pid {rec.pid}" if rec else "[red]not running[/] (`gpufleet local up` restarts it)"))
    table = Table(title="deployed teams")
    for col in ("team", "agents", "endpoints (local URL)"):
        table.add_column(col)
    for team in teams:
        urls = [f"{k.split('/', 1)[1]} {u}" for k, u in routers.items() if k.startswith(f"{team}/")]
        table.add_row(team, str(sum(1 for a in agents if a.team == team)), "\n".join(urls) or "-")
    console.print(table)
