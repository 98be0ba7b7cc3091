"""The registry export: every model version (``models.jsonl``) and every endpoint record
(``endpoints.jsonl``) as JSON lines under ``registry-export/`` in the artifacts bucket, each rewritten on
every change. The bucket is versioned, so each write is a new S3
version, and bucket replication carries it to the DR region.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.approvals import with_decisions
from gpufleet.store.dynamo import now_iso, read_pages

EXPORT_KEY = "registry-export/models.jsonl"
ENDPOINTS_EXPORT_KEY = "registry-export/endpoints.jsonl"
EXPORT_SCHEMA = 1
VERIFY_ROUNDS = 5


def scan_models(clients: AwsClients, runtime: TeamRuntime) -> list[dict[str, Any]]:
    """Every version, with ``status`` as the operator decided it (hosts may write the models table)."""
    items = read_pages(clients.table(runtime.tables.models).scan, ConsistentRead=True)
    return sorted(with_decisions(clients, runtime, items), key=lambda r: (r["model_name"], r["version"]))


def export_registry(clients: AwsClients, runtime: TeamRuntime) -> str | None:
    """Write the export; returns its S3 version id. A full scan each time: registries hold hundreds of
    versions, not millions, and a whole snapshot restores without replaying history."""
    return write_verified(clients, runtime.buckets.artifacts, EXPORT_KEY, lambda: scan_models(clients, runtime))


def export_endpoints(clients: AwsClients, runtime: TeamRuntime) -> str | None:
    """Write the endpoint records' export (which model version each variant serves, and its weight)."""
    from gpufleet.store.endpoints import EndpointTable

    table = EndpointTable(clients.client("dynamodb"), runtime.tables.endpoints)

    def docs() -> list[dict[str, Any]]:
        return [{"endpoint": r.endpoint, "live": r.live, "revision": r.revision,
                 "variants": {v: {"model": s.model, "version": s.version, "weight": s.weight}
                              for v, s in r.variants.items()}}
                for r in sorted(table.list(), key=lambda r: r.endpoint)]

    return write_verified(clients, runtime.buckets.artifacts, ENDPOINTS_EXPORT_KEY, docs)


def write_verified(clients: AwsClients, bucket: str, key: str, scan: Callable[[], list[dict[str, Any]]]) -> str | None:
    """Scan, write, and scan again until the table did not change meanwhile.

    Two writers (say a training agent registering a version and an operator approving another) each scan
    then put; the one whose scan is older may put last and publish a stale snapshot. Every writer checks
    after its put that the table still reads as what it wrote, and writes again if not, so the last put of
    all is of the table as it stands once changes stop."""
    records = scan()
    for _ in range(VERIFY_ROUNDS):
        version = write_export(clients, bucket, key, records)
        current = scan()
        if current == records:
            return version
        records = current
    return write_export(clients, bucket, key, records)


def write_export(clients: AwsClients, bucket: str, key: str, records: list[dict[str, Any]]) -> str | None:
    """One whole snapshot as JSON lines; returns the new S3 version id."""
    exported_at = now_iso()
    lines = [json.dumps({"schema": EXPORT_SCHEMA, "exported_at": exported_at, **r}, sort_keys=True)
             for r in records]
    body = ("\n".join(lines) + "\n" if lines else "").encode()
    resp = clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    return resp.get("VersionId")


def read_export(clients: AwsClients, runtime: TeamRuntime, version_id: str | None = None,
                key: str = EXPORT_KEY, bucket: str | None = None) -> list[dict[str, Any]]:
    kwargs = {"VersionId": version_id} if version_id else {}
    body = clients.s3.get_object(Bucket=bucket or runtime.buckets.artifacts, Key=key, **kwargs)["Body"].read()
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]
