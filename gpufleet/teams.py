"""A deployed team as operators reach it: its runtime config, AWS access and (locally) its router keys.

The job, model, endpoint and fleet commands resolve this first; the demo and the DR drill use it too."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpufleet.aws import AWS_ERRORS, AwsClients
from gpufleet.callrecord import assumed_role, partition
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.local import emulator
from gpufleet.names import team_resource_name
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


def team_context(team: str | None, root: Path | None = None, *, as_operator: bool = True) -> TeamContext:
    """The team's runtime config (written by deploy) and AWS access: the local emulator unless targeting aws.
    On real AWS the caller must be the team's operator role (``require_operator_role``) unless the command
    makes no AWS call of its own (``as_operator=False``: calling an endpoint's URL)."""
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
    ctx = TeamContext(root, runtime, AwsClients.create(runtime.region, emu.endpoint if emu else None), local, region)
    if as_operator and not local:
        require_operator_role(ctx)
    return ctx


def operator_role_name(runtime: TeamRuntime, rebuilt_region: str | None = None) -> str:
    """The team operator role's name, as the team stack names it (``gpufleet.stacks.team``)."""
    return team_resource_name(runtime.platform, runtime.team, "operator", "iam_role", rebuilt_region)


def require_operator_role(ctx: TeamContext) -> None:
    """Stop a team command on real AWS unless it runs as the team's operator role (``operator_role_problem``)."""
    identity = caller_identity(ctx.aws, ctx.runtime, ctx.rebuilt_region)
    problem = operator_role_problem(identity, ctx.runtime, ctx.rebuilt_region)
    if problem:
        raise UserInputError([problem])


def caller_identity(aws: AwsClients, runtime: TeamRuntime, rebuilt_region: str | None = None) -> dict[str, str]:
    """Who these credentials are (``sts:GetCallerIdentity``: ``Arn``, ``Account``). It needs no permission:
    AWS answers it even under an explicit Deny. ``runtime`` names the role to assume when it cannot be asked."""
    try:
        identity = aws.client("sts").get_caller_identity()
    except AWS_ERRORS as exc:
        raise RuntimeFailure(f"team {runtime.team}", f"cannot tell which AWS principal you are ({exc})",
                             "configure credentials that assume the team's operator role "
                             f"{operator_role_name(runtime, rebuilt_region)}") from None
    return {"Arn": str(identity["Arn"]), "Account": str(identity["Account"])}


def operator_role_problem(identity: Mapping[str, str], runtime: TeamRuntime,
                          rebuilt_region: str | None = None) -> str | None:
    """None when the caller (``caller_identity``) is the team's operator role, else the line saying which role
    to assume.

    That role is the CLI's principal: the one the audit judges the CLI's calls against, and, with the
    team's hosts, the only one its buckets serve objects to (their policy denies everyone else, admins
    too). Asked first, so that a command run with other credentials stops before any call it could
    half-finish (a job's code uploaded, its record not written).
    """
    team, role, caller = runtime.team, operator_role_name(runtime, rebuilt_region), identity["Arn"]
    if assumed_role(caller) == role:
        return None
    role_arn = f"arn:{partition(runtime.region)}:iam::{identity['Account']}:role/{role}"
    return (f"credentials: you are {caller}, but team {team}'s commands run as its operator role {role_arn} (the "
            f"team's buckets serve objects to no other principal): add an AWS profile with role_arn = {role_arn} "
            "and source_profile = your own (plus mfa_serial when teams[].operators is empty), then set AWS_PROFILE "
            "to it")


def parse_model_ref(value: str, where: str = "--model") -> tuple[str, int]:
    """``NAME:VERSION`` with a positive whole version."""
    name, sep, version = value.rpartition(":")
    if not sep or not name or not version.isdigit() or int(version) < 1:
        raise UserInputError([f"{where}: {value!r} is not NAME:VERSION (e.g. digits:3)"])
    return name, int(version)
