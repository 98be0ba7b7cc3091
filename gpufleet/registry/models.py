"""The model registry's control-plane operations: list, approve, reject, each followed by the export.

Versions are claimed and read through ``gpufleet.store.models`` (shared with the training hosts); every
change made here rewrites the registry export that DR replicates. A version a host registered reaches
the export with the next change made here (its approval or rejection at the latest).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from gpufleet.aws import AwsClients
from gpufleet.errors import UserInputError
from gpufleet.registry.export import export_registry, scan_models
from gpufleet.schema import ModelStatus
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.dynamo import Record, from_item, is_condition_failure, now_iso
from gpufleet.store.models import models_table, query_versions


def list_model_versions(clients: AwsClients, runtime: TeamRuntime, model_name: str | None = None) -> list[Record]:
    if model_name:
        return query_versions(clients, runtime, model_name)
    return scan_models(clients, runtime)


def set_model_status(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int,
                     status: ModelStatus, reason: str | None = None) -> Record:
    values: Record = {":s": status, ":t": now_iso()}
    expr = "SET #status = :s, updated_at = :t"
    if reason:
        expr += ", status_reason = :r"
        values[":r"] = reason
    try:
        item = models_table(clients, runtime).update_item(
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
