"""``gpufleet dr rebuild|drill``: disaster recovery (see docs/dr.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from gpufleet.cli.context import console, print_phase_table
from gpufleet.cli.options import config_option, handle_errors, json_option, out_option, target_option
from gpufleet.config import load_config
from gpufleet.errors import RuntimeFailure


@click.group()
def dr() -> None:
    """Disaster recovery: rebuild teams in the DR region from code and replicated data."""


def _say(line: str) -> None:
    console.print(line)


@dr.command()
@click.option("--region", required=True, help="The region to rebuild in (platform.dr_region).")
@click.option("--team", "teams", multiple=True, help="Team to rebuild (repeatable; default: every team).")
@click.option("--restore-only", is_flag=True,
              help="Skip the stacks: restore and redeploy only (on real AWS, as the team's rebuilt operator role).")
@config_option
@target_option
@out_option
@json_option
@handle_errors
def rebuild(region: str, teams: tuple[str, ...], restore_only: bool, config_path: Path, target: str | None,
            outdir: Path, as_json: bool) -> None:
    """Apply the stacks in REGION, restore registry and endpoint records from the replica, redeploy.

    On real AWS the restore runs as each team's rebuilt operator role (the replica bucket serves no other
    principal): apply the stacks with deploy credentials, then run --restore-only --team T as that role."""
    from gpufleet.cli.context import resolve_target
    from gpufleet.dr.rebuild import rebuild as run_rebuild
    from gpufleet.workspace import workspace

    cfg = load_config(config_path)
    result = run_rebuild(cfg, resolve_target(target, for_deploy=True), workspace(), Path(outdir), region, teams,
                         (lambda _line: None) if as_json else _say, restore_only=restore_only)
    if as_json:
        click.echo(json.dumps({"region": region, "phases": result.phases, "stack_changes": result.stack_changes,
                               "teams": [asdict(r) for r in result.reports]}))
    else:
        console.print(f"rebuild in {region}: {sum(result.phases.values()):.0f} s "
                      f"({', '.join(f'{k} {v:.0f} s' for k, v in result.phases.items())}); "
                      f"CLI commands reach it with GPUFLEET_REGION={region}")
    if not result.complete:
        raise RuntimeFailure("dr rebuild", "some model versions or endpoints were not restored (listed above)",
                             "check the replica bucket's replication status, then rerun `gpufleet dr rebuild`")


@dr.command()
@json_option
@handle_errors
def drill(as_json: bool) -> None:
    """In the local cloud: deploy + train + serve in A, lose A, rebuild in B; print the measured RTO."""
    from gpufleet.cli.progress import TerraformProgress
    from gpufleet.dr.drill import run_drill
    from gpufleet.workspace import workspace

    with TerraformProgress(console) as progress:
        result = run_drill(workspace(), _say, progress)
    second = result.second
    doc = {"rto_s": result.rto_s, "rto_phases": result.rto_phases, "setup": result.setup,
           "replicated_objects": result.replicated_objects, "same_outputs": result.same_outputs,
           "versions_before": result.versions_before, "versions_after": result.versions_after,
           "restored": [asdict(r) for r in result.rebuild.reports] if result.rebuild else [],
           "second_rebuild": {"stack_changes": second.stack_changes if second else -1,
                              "records_changed": any(r.changed for r in second.reports) if second else True,
                              "plan_changes": result.second_plan_changes}}
    if as_json:
        click.echo(json.dumps(doc))
    else:
        print_phase_table(f"RTO {result.rto_s:.0f} s (loss → rebuilt endpoint answering)", result.rto_phases)
        console.print(f"restored {len(result.versions_after)} model versions; same outputs: {result.same_outputs}; "
                      f"second rebuild: {doc['second_rebuild']}")
    if not (result.same_outputs and result.versions_after == result.versions_before):
        raise RuntimeFailure("dr drill", "the rebuilt region differs from the lost one", "see the output above")
