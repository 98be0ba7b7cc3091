"""``gpufleet endpoint deploy|status|invoke|rollback``: guarded rollouts and calls to an endpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from gpufleet.cli.context import console, team_option
from gpufleet.cli.options import handle_errors, json_option
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.invoke import endpoint_url, invoke_once
from gpufleet.rollout import fleet
from gpufleet.rollout.engine import Rollout, RolloutOptions
from gpufleet.rollout.steps import STRATEGIES
from gpufleet.schema import VARIANTS
from gpufleet.store.endpoints import EndpointRecord, EndpointTable
from gpufleet.teams import TeamContext, parse_model_ref, team_context


@click.group()
def endpoint() -> None:
    """Deploy approved models to endpoints with guarded blue/green rollouts, and call them."""


def target_health(ctx: TeamContext, name: str) -> fleet.TargetHealth:
    if ctx.local:
        from gpufleet.local.cloud import router_target_health

        return router_target_health(ctx.root, ctx.router_team, name)
    return fleet.elb_target_health(ctx.aws.client("elbv2"), ctx.runtime.endpoints[name])


def rollout_options(ctx: TeamContext, **options: Any) -> RolloutOptions:
    """Options for a rollout in this context: local mode runs alarms, and so bakes, on its time scale."""
    if ctx.local:
        from gpufleet.local.alarms import LOCAL_TIME_SCALE

        options["time_scale"] = LOCAL_TIME_SCALE
    return RolloutOptions(**options)


def _rollout(ctx: TeamContext, name: str, options: RolloutOptions | None = None) -> Rollout:
    if name not in ctx.runtime.endpoints:
        raise UserInputError([f"endpoint {name!r}: team {ctx.runtime.team} has no such endpoint "
                              f"(choose from: {', '.join(ctx.runtime.endpoints) or 'none'})"])
    started = time.monotonic()

    def report(line: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {name}: {line}")

    return Rollout(ctx.aws, ctx.runtime, name, target_health(ctx, name), options, report)


@endpoint.command()
@click.argument("name")
@click.option("--model", "model_ref", help="NAME:VERSION of an Approved model.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="canary", show_default=True)
@click.option("--canary-percent", default=10, show_default=True, help="Canary's share of traffic.")
@click.option("--linear-step", default=25, show_default=True, help="Linear's share moved per step.")
@click.option("--bake-seconds", type=float, default=None,
              help="Watch time per step.  [default: the endpoint alarms' detection window]")
@click.option("--healthy-timeout", default=600.0, show_default=True, help="Seconds to wait for healthy targets.")
@click.option("--resume", is_flag=True, help="Continue the rollout a crashed CLI left in progress.")
@team_option
@json_option
@handle_errors
def deploy(name: str, model_ref: str | None, strategy: str, canary_percent: int, linear_step: int,
           bake_seconds: float | None, healthy_timeout: float, resume: bool, team: str | None,
           as_json: bool) -> None:
    """Roll NAME to --model with STRATEGY; roll back on alarm or unhealthy targets (exit 1)."""
    if not resume and model_ref is None:
        raise UserInputError(["--model: missing (pass NAME:VERSION, or --resume to continue a rollout)"])
    ctx = team_context(team)
    opts = rollout_options(ctx, strategy=strategy, canary_percent=canary_percent, linear_step=linear_step,
                           bake_s=bake_seconds, healthy_timeout_s=healthy_timeout)
    rollout = _rollout(ctx, name, opts)
    if resume:
        rec = rollout.resume()
    else:
        model, version = parse_model_ref(model_ref or "")
        rec = rollout.deploy(model, version)
    if as_json:
        click.echo(json.dumps(_status_doc(ctx, name)))
    else:
        console.print(f"[green]{name}[/]: {rec.variants[rec.live].label} is live on {rec.live}")


@endpoint.command()
@click.argument("name")
@click.option("--to", "to_ref", help="NAME:VERSION of an Approved model to go back to.  [default: the version "
                                     "the last rollout replaced]")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="all-at-once", show_default=True)
@click.option("--bake-seconds", type=float, default=None,
              help="Watch time per step.  [default: the endpoint alarms' detection window]")
@click.option("--healthy-timeout", default=600.0, show_default=True, help="Seconds to wait for healthy targets.")
@team_option
@handle_errors
def rollback(name: str, to_ref: str | None, strategy: str, bake_seconds: float | None, healthy_timeout: float,
             team: str | None) -> None:
    """Abort NAME's rollout in progress; or move a live NAME back to the previous version (or --to one)
    through a guarded rollout."""
    ctx = team_context(team)
    to = parse_model_ref(to_ref, "--to") if to_ref else None
    opts = rollout_options(ctx, strategy=strategy, bake_s=bake_seconds, healthy_timeout_s=healthy_timeout)
    rec = _rollout(ctx, name, opts).rollback(to)
    state = (rec.rollout or {}).get("state", "")
    console.print(f"{name}: {state.lower().replace('_', ' ')}; {rec.variants[rec.live].label} serves on {rec.live}")


def endpoint_status(rec: EndpointRecord) -> str:
    """SageMaker's words for where an endpoint stands."""
    r = rec.rollout or {}
    if rec.active_rollout:
        return "RollingBack" if r.get("state") == "ROLLING_BACK" else "Updating"
    if rec.variants[rec.live].model is not None:
        return "InService"
    return "Failed" if r.get("state") == "FAILED" else "NotDeployed"


def _status_doc(ctx: TeamContext, name: str) -> dict[str, Any]:
    ep = ctx.runtime.endpoints[name]
    rec = EndpointTable(ctx.aws.client("dynamodb"), ctx.runtime.tables.endpoints).get_or_new(name)
    health = target_health(ctx, name)
    weights = fleet.read_weights(ctx.aws.client("elbv2"), ep)
    alarms = ctx.aws.client("cloudwatch").describe_alarms(AlarmNames=ep.alarms)["MetricAlarms"] if ep.alarms else []
    variants = {}
    for v in VARIANTS:
        healthy, total = health(v)
        desired = fleet.desired_capacity(ctx.aws.client("autoscaling"), getattr(ep.asgs, v))[0]
        s = rec.variants[v]
        variants[v] = {"model": s.model, "version": s.version, "weight": weights[v], "desired": desired,
                       "healthy": healthy, "targets": total}
    doc: dict[str, Any] = {"endpoint": name, "team": ctx.runtime.team, "status": endpoint_status(rec),
                           "reason": (rec.rollout or {}).get("reason"), "live": rec.live, "variants": variants,
                           "alarms": {a["AlarmName"]: a["StateValue"] for a in alarms}, "rollout": rec.rollout}
    if ctx.local:
        from gpufleet.local.cloud import router_urls

        doc["url"] = router_urls(ctx.root).get(f"{ctx.router_team}/{name}")
    return doc


@endpoint.command()
@click.argument("name")
@team_option
@json_option
@handle_errors
def status(name: str, team: str | None, as_json: bool) -> None:
    """Variants, weights, target health, alarms and the last rollout of NAME."""
    ctx = team_context(team)
    if name not in ctx.runtime.endpoints:
        raise UserInputError([f"endpoint {name!r}: team {ctx.runtime.team} has no such endpoint "
                              f"(choose from: {', '.join(ctx.runtime.endpoints) or 'none'})"])
    doc = _status_doc(ctx, name)
    if as_json:
        click.echo(json.dumps(doc, default=str))
        return
    table = Table(title=f"endpoint {name} (team {ctx.runtime.team}) · {doc['status']} · live: {doc['live']}")
    for col in ("variant", "model", "weight %", "desired", "healthy/targets"):
        table.add_column(col)
    for v, s in doc["variants"].items():
        label = f"{s['model']}:{s['version']}" if s["model"] else "-"
        table.add_row(v, label, str(s["weight"]), str(s["desired"]), f"{s['healthy']}/{s['targets']}")
    console.print(table)
    for alarm, state in doc["alarms"].items():
        console.print(f"alarm {alarm}: {'[red]' if state == 'ALARM' else ''}{state}")
    r = doc["rollout"]
    if r:
        console.print(f"last rollout {r['id']}: {r['model']}:{r['version']} {r['strategy']} → {r['state']}"
                      + (f" ({r['reason']})" if r.get("reason") else ""))
    if doc.get("url"):
        console.print(f"local URL: {doc['url']}/invocations")


@endpoint.command()
@click.argument("name")
@click.option("--data", help="Request body (e.g. a JSON list).")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Body from a file.")
@click.option("--content-type", default="application/json", show_default=True)
@click.option("--accept", default="application/json", show_default=True)
@team_option
@handle_errors
def invoke(name: str, data: str | None, path: Path | None, content_type: str, accept: str,
           team: str | None) -> None:
    """POST a body to NAME's /invocations and print the answer (exit 1 on an error status)."""
    if (data is None) == (path is None):
        raise UserInputError(["--data/--file: pass exactly one of them (e.g. --data '[[0, 1, ...]]')"])
    body = data.encode() if data is not None else path.read_bytes()  # type: ignore[union-attr]
    url = endpoint_url(team_context(team, as_operator=False), name)
    started = time.perf_counter()
    status_code, out = invoke_once(url, body, content_type, accept)
    console.print(f"[dim]{status_code} in {(time.perf_counter() - started) * 1000:.1f} ms[/]")
    click.echo(out.decode(errors="replace"))
    if status_code >= 400:
        raise RuntimeFailure(f"invoke {name}", f"the endpoint answered {status_code}",
                             f"check `gpufleet endpoint status {name}` and the agent logs")
