"""``gpufleet fleet status``: the team's ASGs, their instances and GPU health."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import click
from rich.table import Table

from gpufleet.cli.context import console, team_option
from gpufleet.cli.options import handle_errors, json_option
from gpufleet.schema import VARIANTS
from gpufleet.teams import TeamContext, team_context


@click.group()
def fleet() -> None:
    """The team's training and serving fleets."""


def _local_health(port: int) -> dict[str, Any]:
    """A local agent's ``/healthz`` document (its GPU status included)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        try:
            return dict(json.loads(exc.read()))
        except ValueError:
            return {"healthy": False}
    except (OSError, ValueError):
        return {"healthy": False, "problem": "no answer on /healthz (starting?)"}


def fleet_doc(ctx: TeamContext) -> list[dict[str, Any]]:
    rt = ctx.runtime
    roles = {rt.training.asg: ("training", None)}
    roles.update({getattr(ep.asgs, v): ("serving", f"{name}/{v}")
                  for name, ep in rt.endpoints.items() for v in VARIANTS})
    groups = ctx.aws.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=list(roles))["AutoScalingGroups"]
    local_instances = []
    if ctx.local:
        from gpufleet.local.instances import read_instances

        local_instances = read_instances(ctx.root)
    out = []
    for g in sorted(groups, key=lambda g: g["AutoScalingGroupName"]):
        name = g["AutoScalingGroupName"]
        role, serves = roles[name]
        if ctx.local:
            instances = [{"id": i.instance_id, "pid": i.pid, **_local_health(i.health_port)}
                         for i in local_instances if i.asg == name]
        else:
            instances = [{"id": i["InstanceId"], "type": i.get("InstanceType"), "state": i["LifecycleState"],
                          "healthy": i["HealthStatus"] == "Healthy"} for i in g.get("Instances", [])]
        out.append({"asg": name, "role": role, "serves": serves, "desired": g["DesiredCapacity"],
                    "min": g["MinSize"], "max": g["MaxSize"], "instances": instances})
    return out


@fleet.command()
@team_option
@json_option
@handle_errors
def status(team: str | None, as_json: bool) -> None:
    """ASGs (desired/min/max) and each instance's health and GPU status."""
    ctx = team_context(team)
    doc = fleet_doc(ctx)
    if as_json:
        click.echo(json.dumps(doc, default=str))
        return
    table = Table(title=f"fleet of team {ctx.runtime.team}" + (" (local agents)" if ctx.local else ""))
    for col in ("ASG", "role", "desired (min-max)", "instance", "healthy", "GPU"):
        table.add_column(col)
    for g in doc:
        label = g["role"] + (f" {g['serves']}" if g["serves"] else "")
        rows = g["instances"] or [{"id": "-", "healthy": None}]
        for i, inst in enumerate(rows):
            healthy = {True: "yes", False: "[red]no[/]", None: "-"}[inst.get("healthy")]
            gpu = inst.get("gpu") or inst.get("problem") or "-"
            table.add_row(g["asg"] if i == 0 else "", label if i == 0 else "",
                          f"{g['desired']} ({g['min']}-{g['max']})" if i == 0 else "", inst["id"], healthy, str(gpu))
    console.print(table)
