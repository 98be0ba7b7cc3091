"""The team's model registry (models table): versions monotonic per model name, human approval.

A version number is claimed by a put conditional on ``attribute_not_exists``; a loser re-reads the
latest version and tries the next number. Registration is idempotent per training job, so a job that
is retried after a crash registers its model exactly once. Every change rewrites the registry export.
"""

from __future__ import annotations

import random
import time
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from gpufleet.agent.aws import AwsClients
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.jobs.store import from_item, is_condition_failure, now_iso, to_item
from gpufleet.registry.export import export_registry
from gpufleet.runtime import TeamRuntime
from gpufleet.schema import ModelStatus

Record = dict[str, Any]
PENDING: ModelStatus = "PendingManualApproval"


def artifact_key(model_name: str, version: int) -> str:
    return f"models/{model_name}/{version}/model.tar.gz"


def _table(clients: AwsClients, runtime: TeamRuntime) -> Any:
    return clients.table(runtime.tables.models)


def _query(clients: AwsClients, runtime: TeamRuntime, model_name: str, **kwargs: Any) -> list[Record]:
    items: list[Record] = []
    table = _table(clients, runtime)
    kwargs = {"KeyConditionExpression": Key("model_name").eq(model_name), "ConsistentRead": True, **kwargs}
    while True:
        page = table.query(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page or "Limit" in kwargs:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def latest_version(clients: AwsClients, runtime: TeamRuntime, model_name: str) -> int:
    top = _query(clients, runtime, model_name, ScanIndexForward=False, Limit=1)
    return int(top[0]["version"]) if top else 0


def find_by_job(clients: AwsClients, runtime: TeamRuntime, model_name: str, job_id: str) -> Record | None:
    found = _query(clients, runtime, model_name, FilterExpression=Attr("lineage.job_id").eq(job_id))
    return found[0] if found else None


def register_model_version(clients: AwsClients, runtime: TeamRuntime, model_name: str, *, sha256: str,
                           lineage: Record, max_tries: int = 20) -> Record:
    """Claim the next version of ``model_name`` for this job (or return the one it already has)."""
    job_id = str(lineage.get("job_id", ""))
    if job_id and (existing := find_by_job(clients, runtime, model_name, job_id)):
        return existing
    for attempt in range(max_tries):
        version = latest_version(clients, runtime, model_name) + 1
        record = {"model_name": model_name, "version": version, "status": PENDING, "sha256": sha256,
                  "artifact_uri": f"s3://{runtime.buckets.artifacts}/{artifact_key(model_name, version)}",
                  "lineage": lineage, "created_at": now_iso(), "updated_at": now_iso()}
        try:
            _table(clients, runtime).put_item(Item=to_item(record),
                                              ConditionExpression="attribute_not_exists(model_name)")
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))   # another writer took it: next number
            continue
        export_registry(clients, runtime)
        return record
    raise RuntimeFailure("register model", f"{max_tries} writers beat this one to a version of {model_name}",
                         "retry the registration")


def update_artifact(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int,
                    sha256: str, lineage: Record) -> None:
    """A retried job re-uploaded its artifact: record its new checksum and lineage."""
    _table(clients, runtime).update_item(
        Key={"model_name": model_name, "version": version},
        UpdateExpression="SET sha256 = :h, lineage = :l, updated_at = :t",
        ConditionExpression="attribute_exists(model_name)",
        ExpressionAttributeValues=to_item({":h": sha256, ":l": lineage, ":t": now_iso()}))
    export_registry(clients, runtime)


def get_model_version(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int) -> Record:
    item = _table(clients, runtime).get_item(Key={"model_name": model_name, "version": version},
                                             ConsistentRead=True).get("Item")
    if not item:
        raise UserInputError([f"model {model_name}:{version}: no such version "
                              f"(list them with `gpufleet model list {model_name}`)"])
    return from_item(item)


def list_model_versions(clients: AwsClients, runtime: TeamRuntime, model_name: str | None = None) -> list[Record]:
    if model_name:
        return _query(clients, runtime, model_name)
    from gpufleet.registry.export import scan_models

    return scan_models(clients, runtime)


def set_model_status(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int,
                     status: ModelStatus, reason: str | None = None) -> Record:
    values: Record = {":s": status, ":t": now_iso()}
    expr = "SET #status = :s, updated_at = :t"
    if reason:
        expr += ", status_reason = :r"
        values[":r"] = reason
    try:
        item = _table(clients, runtime).update_item(
            Key={"model_name": model_name, "version": version}, UpdateExpression=expr,
            ConditionExpression="attribute_exists(model_name)", ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values, ReturnValues="ALL_NEW")["Attributes"]
    except ClientError as exc:
        if is_condition_failure(exc):
            raise UserInputError([f"model {model_name}:{version}: no such version "
                                  f"(list them with `gpufleet model list {model_name}`)"]) from None
        raise
    export_registry(clients, runtime)
    return from_item(item)


def approve_model_version(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int) -> Record:
    return set_model_status(clients, runtime, model_name, version, "Approved")


def reject_model_version(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int,
                         reason: str | None = None) -> Record:
    return set_model_status(clients, runtime, model_name, version, "Rejected", reason)
