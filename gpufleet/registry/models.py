"""The model registry's control-plane operations: list, approve, reject, each followed by the export.

Versions are claimed and read through ``gpufleet.store.models`` (shared with the training hosts). A
decision is written to the approvals table (``gpufleet.store.approvals``), which only the operator role
may write, pinned to the artifact's sha256; the status shown and deployed is that decision's, never the
models table's own ``status`` (a host could write that). The models table keeps a copy for the export.
Every change made here rewrites the registry export that DR replicates.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from gpufleet.aws import AwsClients
from gpufleet.errors import UserInputError
from gpufleet.registry.export import export_registry, scan_models
from gpufleet.schema import ModelStatus
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.approvals import decided_status, get_decision, record_decision, with_decisions
from gpufleet.store.dynamo import Record, from_item, is_condition_failure, now_iso
from gpufleet.store.models import get_model_version, models_table, query_versions


def list_model_versions(clients: AwsClients, runtime: TeamRuntime, model_name: str | None = None) -> list[Record]:
    """Versions with ``status`` as the operator decided it (the approvals table)."""
    if model_name:
        return with_decisions(clients, runtime, query_versions(clients, runtime, model_name))
    return scan_models(clients, runtime)


def show_model_version(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int) -> Record:
    """One version with ``status`` as decided, and the decision itself (``approval``) when there is one."""
    record = get_model_version(clients, runtime, model_name, version)
    decision = get_decision(clients, runtime, model_name, version)
    return {**record, "status": decided_status(record, decision), **({"approval": decision} if decision else {})}


def set_model_status(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int,
                     status: ModelStatus, reason: str | None = None) -> Record:
    record_decision(clients, runtime, get_model_version(clients, runtime, model_name, version), status, reason)
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
