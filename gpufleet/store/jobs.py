"""The team's jobs table: records and the conditional writes every status transition goes through.

A transition names the status (and attempt) it expects; a write that loses a race returns False
instead of overwriting, so two agents can never both own a job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from gpufleet.aws import AwsClients
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.dynamo import Record, from_item, is_condition_failure, now_iso, read_pages, to_item


def jobs_table(clients: AwsClients, runtime: TeamRuntime) -> Any:
    return clients.table(runtime.tables.jobs)


def get_job(clients: AwsClients, runtime: TeamRuntime, job_id: str) -> Record | None:
    item = jobs_table(clients, runtime).get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    return from_item(item) if item else None


def put_new_job(clients: AwsClients, runtime: TeamRuntime, record: Record) -> None:
    jobs_table(clients, runtime).put_item(Item=to_item(record), ConditionExpression="attribute_not_exists(job_id)")


def update_job(clients: AwsClients, runtime: TeamRuntime, job_id: str, sets: Record, *,
               expect_status: Iterable[str] | None = None, expect_attempts: int | None = None,
               condition: str = "", names: dict[str, str] | None = None, values: Record | None = None,
               set_exprs: Iterable[str] = (), removes: Iterable[str] = ()) -> bool:
    """Set ``sets`` (plus raw ``set_exprs``) if the job is in an expected status and attempt.

    Returns False when the condition fails: another agent (or the CLI) moved the job first.
    """
    names = {"#job_id": "job_id", **(names or {})}
    values = dict(values or {})
    sets = {**sets, "updated_at": now_iso()}
    parts = list(set_exprs)
    for i, (field, value) in enumerate(sets.items()):
        names[f"#s{i}"], values[f":s{i}"] = field, value
        parts.append(f"#s{i} = :s{i}")
    expr = "SET " + ", ".join(parts)
    rm = list(removes)
    if rm:
        for i, field in enumerate(rm):
            names[f"#r{i}"] = field
        expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(rm)))
    conds = ["attribute_exists(#job_id)"]
    if expect_status is not None:
        names["#status"] = "status"
        keys = []
        for i, status in enumerate(expect_status):
            values[f":es{i}"] = status
            keys.append(f":es{i}")
        conds.append(f"#status IN ({', '.join(keys)})")
    if expect_attempts is not None:
        names["#attempts"], values[":ea"] = "attempts", expect_attempts
        conds.append("#attempts = :ea")
    if condition:
        conds.append(condition)
    try:
        jobs_table(clients, runtime).update_item(
            Key={"job_id": job_id}, UpdateExpression=expr, ConditionExpression=" AND ".join(conds),
            ExpressionAttributeNames=names, ExpressionAttributeValues=to_item(values))
    except ClientError as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def scan_jobs(clients: AwsClients, runtime: TeamRuntime) -> list[Record]:
    """Every job record. A team's jobs table is small; the CLI pages through it once."""
    return read_pages(jobs_table(clients, runtime).scan)


def log_key(job_id: str, host: str) -> str:
    """Where a host's log of a job lives in the team's logs bucket."""
    return f"jobs/{job_id}/{host}.log"
