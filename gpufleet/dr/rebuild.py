"""``gpufleet dr rebuild``: the stacks for the DR region, then the registry and endpoints from the replica."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gpufleet.aws import AwsClients
from gpufleet.config import PlatformConfig
from gpufleet.deploy import StackOutcome, run_stacks
from gpufleet.dr.restore import RestoreReport, Say, restore_team, rollout_deployer
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.rollout.fleet import TargetHealth, elb_target_health
from gpufleet.schema.runtime import TeamRuntime, load_runtime
from gpufleet.target import Target
from gpufleet.teams import caller_identity, operator_role_name, operator_role_problem
from gpufleet.workspace import teams_dir


@dataclass
class RebuildResult:
    region: str
    phases: dict[str, float] = field(default_factory=dict)
    stacks: list[StackOutcome] = field(default_factory=list)
    reports: list[RestoreReport] = field(default_factory=list)

    @property
    def stack_changes(self) -> int:
        return sum(o.result.added + o.result.changed + o.result.removed for o in self.stacks)

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.reports)


def check_region(cfg: PlatformConfig, region: str) -> None:
    if region == cfg.platform.region:
        raise UserInputError([f"--region: {region!r} is the platform's own region (rebuild in "
                              f"platform.dr_region, {cfg.platform.dr_region!r})"])
    if region != cfg.platform.dr_region:
        raise UserInputError([f"--region: {region!r} holds no replica (the artifacts replicate to platform.dr_region "
                              f"{cfg.platform.dr_region!r}; set dr_region and deploy before a loss)"])


def team_names(cfg: PlatformConfig, teams: Sequence[str]) -> list[str]:
    known = [t.name for t in cfg.teams]
    unknown = [t for t in teams if t not in known]
    if unknown:
        raise UserInputError([f"--team: {t!r} is not in the config (choose from {', '.join(known)})" for t in unknown])
    return list(teams) or known


def rebuild_outdir(base: Path, region: str) -> Path:
    """The rebuild's synth output, apart from the primary's."""
    return base.with_name(f"{base.name}-{region}")


def rebuild(cfg: PlatformConfig, target: Target, workspace: Path, outdir: Path, region: str,
            teams: Sequence[str] = (), say: Say = print, restore_only: bool = False) -> RebuildResult:
    """Apply the stacks for ``region`` (unless ``restore_only``), then restore and redeploy each team.
    Safe to run again."""
    check_region(cfg, region)
    chosen = team_names(cfg, teams)
    result = RebuildResult(region)
    if not restore_only:
        started = time.monotonic()
        _, result.stacks = run_stacks(cfg, target, workspace, rebuild_outdir(outdir, region), "deploy",
                                      ["platform", *(f"team-{t}" for t in chosen)], region=region)
        result.phases["stacks"] = time.monotonic() - started
        say(f"stacks applied in {region}: {result.stack_changes} resource changes")
    if target.local and not restore_only:
        started = time.monotonic()
        _local_cloud(workspace)
        result.phases["local cloud"] = time.monotonic() - started
    started = time.monotonic()
    runtimes = {team: load_runtime(teams_dir(workspace, region) / f"{team}.json") for team in chosen}
    clients = AwsClients.create(region, target.emulator_endpoint if target.local else None)
    if not target.local:
        require_restorer(clients, runtimes, region, stacks_applied=not restore_only)
    for runtime in runtimes.values():
        deploy = rollout_deployer(clients, runtime, _health(target, workspace, clients, runtime), say)
        report = restore_team(clients, runtime, deploy)
        result.reports.append(report)
        for line in report.lines():
            say(line)
    result.phases["restore + redeploy"] = time.monotonic() - started
    return result


def require_restorer(clients: AwsClients, runtimes: Mapping[str, TeamRuntime], region: str,
                     stacks_applied: bool) -> None:
    """On real AWS a team is restored as its rebuilt operator role: the replica bucket it adopted serves
    objects to the team's roles only, administrators included in the refusal. One role per team, so a
    caller that is not the role of every team chosen restores none, and is told what to run per team."""
    if not runtimes:
        return
    identity = caller_identity(clients, next(iter(runtimes.values())), region)   # one principal for all teams
    problems = {team: p for team, rt in runtimes.items() if (p := operator_role_problem(identity, rt, region))}
    if not problems:
        return
    done = f"the stacks are applied in {region}, but " if stacks_applied else ""
    runs = "; ".join(f"as {operator_role_name(runtimes[t], region)}: AWS_PROFILE=<its profile> gpufleet dr rebuild "
                     f"--region {region} --team {t} --restore-only" for t in problems)
    raise RuntimeFailure("dr rebuild", f"{done}team(s) {', '.join(problems)} were not restored: "
                         f"{next(iter(problems.values()))}", f"from this workspace, per team: {runs}")


def plan_changes(cfg: PlatformConfig, target: Target, workspace: Path, outdir: Path, region: str,
                 teams: Sequence[str] = ()) -> int:
    """How many resources a plan of the rebuilt stacks would change (0 once a rebuild has run)."""
    chosen = team_names(cfg, teams)
    _, outcomes = run_stacks(cfg, target, workspace, rebuild_outdir(outdir, region), "plan",
                             ["platform", *(f"team-{t}" for t in chosen)], region=region)
    return sum(o.result.added + o.result.changed + o.result.removed for o in outcomes)


def _local_cloud(workspace: Path) -> None:
    """The local cloud follows the rebuilt runtime configs as EC2 and the ALB would the new stacks."""
    from gpufleet.errors import RuntimeFailure
    from gpufleet.local import cloud, emulator

    emu = emulator.find(workspace)
    if emu is None:
        raise RuntimeFailure("dr rebuild", "the local emulator is not running", "start it with `gpufleet local up`")
    cloud.start(workspace, emu)


def _health(target: Target, workspace: Path, clients: AwsClients,
            runtime: TeamRuntime) -> Callable[[str], TargetHealth]:
    if target.local:
        from gpufleet.local.cloud import router_target_health

        return lambda ep: router_target_health(workspace, f"{runtime.team}@{runtime.region}", ep)
    return lambda ep: elb_target_health(clients.client("elbv2"), runtime.endpoints[ep])
