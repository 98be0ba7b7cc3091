"""``gpufleet team add``: add a team to ``gpufleet.yaml``, keeping its comments and layout."""

from __future__ import annotations

from pathlib import Path

import click

from gpufleet.cli.config_edit import add_team, team_entry
from gpufleet.cli.context import console
from gpufleet.cli.options import config_option, handle_errors
from gpufleet.errors import UserInputError


@click.group()
def team() -> None:
    """Manage the teams in the platform config."""


@team.command()
@click.argument("name")
@click.option("--instance-types", default="g5.xlarge", show_default=True,
              help="Comma-separated GPU instance types for training (first is preferred).")
@click.option("--max-instances", default=2, show_default=True, help="The team's GPU host quota.")
@click.option("--spot-percentage", default=100, show_default=True, help="Share of capacity on spot.")
@click.option("--endpoint", "endpoints", multiple=True, metavar="NAME:INSTANCE_TYPE",
              help="An endpoint to create (repeatable), e.g. digits:g5.xlarge.")
@config_option
@handle_errors
def add(name: str, instance_types: str, max_instances: int, spot_percentage: int, endpoints: tuple[str, ...],
        config_path: Path) -> None:
    """Add team NAME to the config (its comments stay), then deploy it with `gpufleet deploy team-NAME`."""
    parsed = []
    for ep in endpoints:
        ep_name, sep, ep_type = ep.partition(":")
        if not sep or not ep_name or not ep_type:
            raise UserInputError([f"--endpoint: {ep!r} is not NAME:INSTANCE_TYPE (e.g. digits:g5.xlarge)"])
        parsed.append((ep_name, ep_type))
    types = [t.strip() for t in instance_types.split(",") if t.strip()]
    cfg = add_team(config_path, team_entry(name, types, max_instances, spot_percentage, parsed))
    console.print(f"{config_path}: added team {name} ({len(cfg.teams)} teams now); "
                  f"deploy it with `gpufleet deploy team-{name}`")
