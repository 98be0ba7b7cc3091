"""``gpufleet model list|show|approve|reject|register|package``: the team's model registry."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from gpufleet.cli.context import console, team_option
from gpufleet.cli.options import handle_errors, json_option
from gpufleet.teams import TeamContext, parse_model_ref, team_context


@click.group()
def model() -> None:
    """List, inspect, approve and reject model versions; register models trained elsewhere."""


_ref_argument = click.argument("ref", metavar="NAME:VERSION")


def _version_of_team(ref: str, team: str | None) -> tuple[TeamContext, str, int]:
    """The team and the model version REF names; a malformed REF fails before the team is looked up."""
    name, version = parse_model_ref(ref, "NAME:VERSION")
    return team_context(team), name, version


@model.command(name="list")
@click.argument("name", required=False)
@team_option
@json_option
@handle_errors
def list_(name: str | None, team: str | None, as_json: bool) -> None:
    """Model versions (of NAME, or all), with status and metrics."""
    from gpufleet.registry.models import list_model_versions

    ctx = team_context(team)
    versions = list_model_versions(ctx.aws, ctx.runtime, name)
    if as_json:
        click.echo(json.dumps(versions, default=str))
        return
    table = Table(title=f"models of team {ctx.runtime.team}")
    for col in ("model", "version", "status", "metrics", "job", "created"):
        table.add_column(col)
    for v in sorted(versions, key=lambda v: (v["model_name"], int(v["version"]))):
        metrics = (v.get("lineage") or {}).get("metrics") or {}
        table.add_row(v["model_name"], str(v["version"]), v.get("status", "?"),
                      ", ".join(f"{k}={float(x):.4g}" for k, x in metrics.items()) or "-",
                      str((v.get("lineage") or {}).get("job_id") or "-"), str(v.get("created_at", ""))[:19])
    console.print(table)


@model.command()
@_ref_argument
@team_option
@handle_errors
def show(ref: str, team: str | None) -> None:
    """One version's record: artifact, sha256, status (as the operator decided) and lineage."""
    from gpufleet.registry.models import show_model_version

    ctx, name, version = _version_of_team(ref, team)
    click.echo(json.dumps(show_model_version(ctx.aws, ctx.runtime, name, version), indent=2, default=str))


@model.command()
@_ref_argument
@team_option
@handle_errors
def approve(ref: str, team: str | None) -> None:
    """Approve a version so it may be deployed."""
    from gpufleet.registry.models import approve_model_version

    ctx, name, version = _version_of_team(ref, team)
    approve_model_version(ctx.aws, ctx.runtime, name, version)
    console.print(f"{name}:{version}: Approved (deploy it with `gpufleet endpoint deploy ENDPOINT --model {ref}`)")


@model.command()
@_ref_argument
@click.option("--reason", default=None, help="Why, for the record.")
@team_option
@handle_errors
def reject(ref: str, reason: str | None, team: str | None) -> None:
    """Reject a version: it can never be deployed."""
    from gpufleet.registry.models import reject_model_version

    ctx, name, version = _version_of_team(ref, team)
    reject_model_version(ctx.aws, ctx.runtime, name, version, reason)
    console.print(f"{name}:{version}: Rejected")


_code_option = click.option("--code", "code", type=click.Path(path_type=Path),
                            help="A SageMaker code folder (inference.py, optionally requirements.txt): packed "
                                 "as the artifact's code/.")


@model.command()
@click.argument("name")
@click.option("--artifact", required=True, help="model.tar.gz, a model folder, or s3://bucket/key.")
@_code_option
@click.option("--metric", "metrics", multiple=True, metavar="NAME=NUMBER", help="Recorded in the lineage; repeat.")
@click.option("--description", default=None, help="Recorded in the lineage.")
@click.option("--for-image", is_flag=True, help="An endpoint's image serves it: its format is the image's "
                                                  "business, so serving's own files are not required.")
@team_option
@json_option
@handle_errors
def register(name: str, artifact: str, code: Path | None, metrics: tuple[str, ...], description: str | None,
             for_image: bool, team: str | None, as_json: bool) -> None:
    """Register a model trained elsewhere as a new PendingManualApproval version of NAME."""
    from gpufleet.registry.bring import parse_metrics, register_external_model

    values = parse_metrics(metrics)
    ctx = team_context(team)
    record = register_external_model(ctx.aws, ctx.runtime, name, artifact, code=code, metrics=values,
                                     description=description, for_image=for_image)
    _print_new_version(record, as_json)


@model.command()
@_ref_argument
@click.option("--code", "code", type=click.Path(path_type=Path), required=True,
              help="A SageMaker code folder (inference.py, optionally requirements.txt).")
@team_option
@json_option
@handle_errors
def package(ref: str, code: Path, team: str | None, as_json: bool) -> None:
    """A new version of a registered model with the inference code of --code attached."""
    from gpufleet.registry.bring import package_model_version

    ctx, name, version = _version_of_team(ref, team)
    _print_new_version(package_model_version(ctx.aws, ctx.runtime, name, version, code), as_json)


def _print_new_version(record: dict[str, object], as_json: bool) -> None:
    ref = f"{record['model_name']}:{record['version']}"
    if as_json:
        click.echo(json.dumps(record, default=str))
        return
    console.print(f"{ref}: {record['status']} (sha256 {record['sha256']}); approve it with "
                  f"`gpufleet model approve {ref}`")
