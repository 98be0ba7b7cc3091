"""The team's jobs table: records and the conditional writes every status transition goes through.

A transition names the status (and attempt) it expects; a write that loses a race returns False
instead of overwriting, so two agents can never both own a job.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from gpufleet.agent.aws import AwsClients
from gpufleet.runtime import TeamRuntime

Record = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def age_s(iso: str | None) -> float:
    """Seconds since ``iso`` (infinite when missing or unreadable: treat as stale)."""
    try:
        then = datetime.strptime(str(iso), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return float("inf")
    return time.time() - then


def to_item(value: Any) -> Any:
    """Python -> DynamoDB: floats become Decimals (boto3 refuses floats)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_item(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_item(v) for v in value]
    return value


def from_item(value: Any) -> Any:
    """DynamoDB -> Python: Decimals become ints or floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_item(v) for v in value]
    return value


def is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


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
    table = jobs_table(clients, runtime)
    items: list[Record] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
