"""A deployed team as operators reach it: its runtime config, AWS access and (locally) its router keys.

The job, model, endpoint and fleet commands resolve this first; the demo and the DR drill use it too."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gpufleet.aws import AwsClients
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.local import emulator
from gpufleet.schema.runtime import TeamRuntime, load_runtime
from gpufleet.target import target_kind
from gpufleet.workspace import REGION_ENV, teams_dir, workspace

TEAM_ENV = "GPUFLEET_TEAM"

@dataclass(frozen=True)
class TeamContext:
    root: Path
    runtime: TeamRuntime
    aws: AwsClients
    local: bool
    rebuilt_region: str | None = None  # a DR rebuild's region, chosen with $GPUFLEET_REGION

    @property
    def router_team(self) -> str:
        """The team's name in local router keys (``<team>@<region>`` for a DR rebuild)."""
        return f"{self.runtime.team}@{self.rebuilt_region}" if self.rebuilt_region else self.runtime.team


def deployed_teams(root: Path, rebuilt_region: str | None = None) -> list[str]:
    return sorted(p.stem for p in teams_dir(root, rebuilt_region).glob("*.json"))


def team_context(team: str | None, root: Path | None = None) -> TeamContext:
    """The team's runtime config (written by deploy) and AWS access: the local emulator unless targeting aws."""
    root = workspace(root)
    local = target_kind() == "local"
    if local and emulator.find(root) is None:
        raise RuntimeFailure("local cloud", "it is not running", "start it with `gpufleet local up`")
    region = os.environ.get(REGION_ENV) or None
    if region and not teams_dir(root, region).is_dir():
        region = None  # the platform's own region: its configs are the primary ones
    teams = deployed_teams(root, region)
    team = team or os.environ.get(TEAM_ENV)
    if team is None:
        if len(teams) != 1:
            raise UserInputError([f"--team: {len(teams)} teams are deployed ({', '.join(teams) or 'none'}) "
                                  f"(pass --team or set {TEAM_ENV})"])
        team = teams[0]
    if team not in teams:
        raise UserInputError([f"--team: {team!r} is not deployed here (choose from: {', '.join(teams) or 'none'}; "
                              "deploy it with `gpufleet deploy team-<name>`)"])
    runtime = load_runtime(teams_dir(root, region) / f"{team}.json")
    emu = emulator.find(root) if local else None
    return TeamContext(root, runtime, AwsClients.create(runtime.region, emu.endpoint if emu else None), local,
                       region)


def parse_model_ref(value: str, where: str = "--model") -> tuple[str, int]:
    """``NAME:VERSION`` with a positive whole version."""
    name, sep, version = value.rpartition(":")
    if not sep or not name or not version.isdigit() or int(version) < 1:
        raise UserInputError([f"{where}: {value!r} is not NAME:VERSION (e.g. digits:3)"])
    return name, int(version)
