"""``gpufleet job submit|list|status|logs|cancel``: training jobs on the team's GPU fleet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from gpufleet.cli.context import console, team_option
from gpufleet.cli.options import handle_errors, json_option
from gpufleet.jobs.wait import wait_for_job
from gpufleet.teams import team_context


@click.group()
def job() -> None:
    """Submit training jobs (SageMaker script mode) and follow them."""


@job.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", "source_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Local code directory to package (default: the spec's source URI).")
@click.option("--wait", is_flag=True, help="Wait until the job ends (exit 1 unless it succeeds).")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds --wait waits.")
@team_option
@json_option
@handle_errors
def submit(spec: Path, source_dir: Path | None, wait: bool, timeout: float, team: str | None, as_json: bool) -> None:
    """Validate SPEC (YAML/JSON), upload the code and queue the job."""
    from gpufleet.jobs.submit import submit_job
    from gpufleet.schema.job_spec import load_job_spec

    ctx = team_context(team)
    parsed = load_job_spec(spec)
    job_id = submit_job(ctx.aws, ctx.runtime, parsed, source_dir)
    console.print(f"job {job_id} queued for team {ctx.runtime.team}")
    record: dict[str, Any] = {"job_id": job_id, "status": "QUEUED"}
    if wait:
        record = wait_for_job(ctx, job_id, timeout, lambda r: console.print(f"  {job_id}: {r['status']}"))
    if as_json:
        click.echo(json.dumps(record, default=str))
    elif wait:
        console.print(f"job {job_id}: SUCCEEDED" + (f", registered {record['model']}" if record.get("model") else ""))


@job.command(name="list")
@click.option("--status", "status_filter", default=None, help="Only jobs in this status.")
@team_option
@json_option
@handle_errors
def list_(status_filter: str | None, team: str | None, as_json: bool) -> None:
    """The team's jobs, newest first."""
    from gpufleet.jobs.ops import list_jobs

    ctx = team_context(team)
    jobs = list_jobs(ctx.aws, ctx.runtime, status_filter)
    if as_json:
        click.echo(json.dumps(jobs, default=str))
        return
    table = Table(title=f"jobs of team {ctx.runtime.team}")
    for col in ("job", "status", "attempts", "host", "model", "created"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j["job_id"], j.get("status", "?"), str(j.get("attempts", 0)), str(j.get("claimed_by") or "-"),
                      str(j.get("model") or "-"), str(j.get("created_at", ""))[:19])
    console.print(table)


@job.command()
@click.argument("job_id")
@team_option
@json_option
@handle_errors
def status(job_id: str, team: str | None, as_json: bool) -> None:
    """One job's record: status, attempts, metrics, model, reason."""
    from gpufleet.jobs.ops import job_status

    ctx = team_context(team)
    record = job_status(ctx.aws, ctx.runtime, job_id)
    if as_json:
        click.echo(json.dumps(record, default=str))
        return
    for key in ("job_id", "status", "attempts", "claimed_by", "model", "metrics", "reason", "created_at",
                "updated_at"):
        if record.get(key) not in (None, "", {}):
            console.print(f"{key:>11}: {record[key]}")


@job.command()
@click.argument("job_id")
@team_option
@handle_errors
def logs(job_id: str, team: str | None) -> None:
    """Each host's log of JOB_ID, as uploaded so far."""
    from gpufleet.jobs.ops import job_logs

    ctx = team_context(team)
    for host, text in job_logs(ctx.aws, ctx.runtime, job_id).items():
        console.print(f"[bold]── {host}[/]")
        click.echo(text.rstrip())


@job.command()
@click.argument("job_id")
@team_option
@handle_errors
def cancel(job_id: str, team: str | None) -> None:
    """Cancel JOB_ID; the agent running it stops it at its next heartbeat."""
    from gpufleet.jobs.ops import cancel_job

    ctx = team_context(team)
    record = cancel_job(ctx.aws, ctx.runtime, job_id)
    console.print(f"job {job_id}: {record['status']}")
