"""The team's approvals table: the operator's decision on each model version, pinned to its artifact.

A host role may register versions in the models table but has no grant on this table, so approving is
the operator's alone. A decision copies the version's ``artifact_uri`` and ``sha256`` as they were when
the operator judged them; serving loads only that artifact, so rewriting the models table afterwards
changes nothing that is served. Items have the shape of ``gpufleet.schema.registry.ApprovalRecord``.
"""

from __future__ import annotations

from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.schema import ModelStatus
from gpufleet.schema.registry import PENDING
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.dynamo import Record, from_item, now_iso, read_pages, to_item


def approvals_table(clients: AwsClients, runtime: TeamRuntime) -> Any:
    return clients.table(runtime.tables.approvals)


def record_decision(clients: AwsClients, runtime: TeamRuntime, version: Record, status: ModelStatus,
                    reason: str | None = None) -> Record:
    """Write the operator's decision on ``version`` (a models-table record), pinning its artifact."""
    decision: Record = {"model_name": version["model_name"], "version": int(version["version"]),
                        "status": status, "sha256": version["sha256"], "artifact_uri": version["artifact_uri"],
                        "decided_at": now_iso()}
    if reason:
        decision["reason"] = reason
    approvals_table(clients, runtime).put_item(Item=to_item(decision))
    return decision


def get_decision(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int) -> Record | None:
    item = approvals_table(clients, runtime).get_item(Key={"model_name": model_name, "version": version},
                                                      ConsistentRead=True).get("Item")
    return from_item(item) if item else None


def all_decisions(clients: AwsClients, runtime: TeamRuntime) -> dict[tuple[str, int], Record]:
    items = read_pages(approvals_table(clients, runtime).scan, ConsistentRead=True)
    return {(str(d["model_name"]), int(d["version"])): d for d in items}


def with_decisions(clients: AwsClients, runtime: TeamRuntime, versions: list[Record]) -> list[Record]:
    """``versions`` (models-table records) with ``status`` replaced by the operator's decision."""
    decisions = all_decisions(clients, runtime)
    return [{**v, "status": decided_status(v, decisions.get((str(v["model_name"]), int(v["version"]))))}
            for v in versions]


def decided_status(version: Record, decision: Record | None) -> ModelStatus:
    """A version's status as the operator decided it; what the models table says is a host's claim."""
    if decision is None or decision.get("sha256") != version.get("sha256"):
        return PENDING
    status: ModelStatus = decision["status"]
    return status


def approved_artifact(dynamodb: Any, table: str, model_name: str, version: int) -> tuple[str, str] | None:
    """``(artifact_uri, sha256)`` the operator approved, or None (a low-level client: the serving agent's)."""
    item = dynamodb.get_item(TableName=table, ConsistentRead=True,
                             Key={"model_name": {"S": model_name}, "version": {"N": str(version)}}).get("Item")
    if not item or item.get("status", {}).get("S") != "Approved":
        return None
    return item["artifact_uri"]["S"], item["sha256"]["S"]
