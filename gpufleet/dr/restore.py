"""Restore a team's registry and endpoints in a rebuilt region from the replicated export.

Reads only the artifacts bucket of the rebuilt region, which is the replica S3 replication fed: the
export (``registry-export/*.jsonl``) and the model artifacts. Every model version's artifact is
checked against its recorded sha256 before the version is restored; an endpoint is redeployed only
with a restored version. Idempotent: records already equal to the export are left alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from gpufleet.aws import AwsClients
from gpufleet.registry.export import ENDPOINTS_EXPORT_KEY, EXPORT_KEY, export_registry, read_export
from gpufleet.rollout.fleet import TargetHealth
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.approvals import record_decision
from gpufleet.store.dynamo import from_item, to_item
from gpufleet.store.endpoints import EndpointTable

EXPORT_ONLY = ("schema", "exported_at")  # fields the export adds to each record
Say = Callable[[str], None]
CHUNK = 1 << 20


@dataclass
class RestoreReport:
    team: str
    models_restored: list[str] = field(default_factory=list)      # name:version
    models_unchanged: list[str] = field(default_factory=list)
    models_not_restored: dict[str, str] = field(default_factory=dict)  # name:version -> reason
    endpoints_redeployed: dict[str, str] = field(default_factory=dict)  # endpoint -> name:version
    endpoints_unchanged: dict[str, str] = field(default_factory=dict)
    endpoints_not_restored: dict[str, str] = field(default_factory=dict)  # endpoint -> reason

    @property
    def changed(self) -> bool:
        return bool(self.models_restored or self.endpoints_redeployed)

    @property
    def complete(self) -> bool:
        return not self.models_not_restored and not self.endpoints_not_restored

    def lines(self) -> list[str]:
        out = [f"team {self.team}: models restored {len(self.models_restored)}, unchanged "
               f"{len(self.models_unchanged)}, not restored {len(self.models_not_restored)}"]
        out += [f"  restored {m}" for m in self.models_restored]
        out += [f"  NOT restored {m}: {why}" for m, why in sorted(self.models_not_restored.items())]
        out += [f"  endpoint {e}: redeployed with {m}" for e, m in self.endpoints_redeployed.items()]
        out += [f"  endpoint {e}: already serving {m}" for e, m in self.endpoints_unchanged.items()]
        out += [f"  endpoint {e}: NOT restored: {why}" for e, why in sorted(self.endpoints_not_restored.items())]
        return out


def _key_of(uri: str) -> str:
    """``s3://bucket/key`` -> ``key`` (the replica keeps the source's keys)."""
    return uri.removeprefix("s3://").split("/", 1)[1]


def replica_sha256(clients: AwsClients, bucket: str, key: str) -> str | None:
    """The sha256 of the replica object, streamed; None when replication has not delivered it."""
    try:
        body = clients.s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
            return None
        raise
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def read_replica_export(clients: AwsClients, runtime: TeamRuntime, key: str) -> list[dict[str, Any]]:
    try:
        return read_export(clients, runtime, key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return []  # nothing was ever exported (no model registered, no endpoint deployed)
        raise


def restore_models(clients: AwsClients, runtime: TeamRuntime, report: RestoreReport) -> None:
    """Put every exported version whose replica artifact matches its sha256 into the models table."""
    bucket = runtime.buckets.artifacts
    table = clients.table(runtime.tables.models)
    for doc in read_replica_export(clients, runtime, EXPORT_KEY):
        record = {k: v for k, v in doc.items() if k not in EXPORT_ONLY}
        ref = f"{record['model_name']}:{record['version']}"
        key = _key_of(str(record["artifact_uri"]))
        actual = replica_sha256(clients, bucket, key)
        if actual is None:
            report.models_not_restored[ref] = f"s3://{bucket}/{key} is not in the replica"
            continue
        if actual != record.get("sha256"):
            report.models_not_restored[ref] = (f"s3://{bucket}/{key} has sha256 {actual[:12]}…, "
                                               f"the registry recorded {str(record.get('sha256'))[:12]}…")
            continue
        record["artifact_uri"] = f"s3://{bucket}/{key}"
        current = table.get_item(Key={"model_name": record["model_name"], "version": record["version"]},
                                 ConsistentRead=True).get("Item")
        if current is not None and from_item(current) == record:
            report.models_unchanged.append(ref)
            continue
        table.put_item(Item=to_item(record))
        if record.get("status") in ("Approved", "Rejected"):
            # The export carries the operator's decisions; the rebuilt region's approvals table gets them
            # back, pinned to the replica artifact whose sha256 was just checked.
            record_decision(clients, runtime, record, record["status"], record.get("status_reason"))
        report.models_restored.append(ref)
    if report.models_restored:
        export_registry(clients, runtime)  # the rebuilt region's own export, for its own next loss


def restore_endpoints(clients: AwsClients, runtime: TeamRuntime, report: RestoreReport,
                      deploy: Callable[[str, str, int], None]) -> None:
    """Redeploy each exported endpoint with the version it served live; ``deploy(endpoint, model, version)``."""
    restored = set(report.models_restored + report.models_unchanged)
    table = EndpointTable(clients.client("dynamodb"), runtime.tables.endpoints)
    for doc in read_replica_export(clients, runtime, ENDPOINTS_EXPORT_KEY):
        name, live = doc["endpoint"], doc["variants"][doc["live"]]
        if not live.get("model"):
            continue  # nothing was deployed there
        ref = f"{live['model']}:{live['version']}"
        if name not in runtime.endpoints:
            report.endpoints_not_restored[name] = "the config no longer defines this endpoint"
        elif ref not in restored:
            report.endpoints_not_restored[name] = f"it served {ref}, which was not restored"
        elif _serving(table, name, live["model"], int(live["version"])):
            report.endpoints_unchanged[name] = ref
        else:
            deploy(name, live["model"], int(live["version"]))
            report.endpoints_redeployed[name] = ref


def _serving(table: EndpointTable, endpoint: str, model: str, version: int) -> bool:
    rec = table.get(endpoint)
    if rec is None or rec.active_rollout:
        return False
    state = rec.variants[rec.live]
    return state.model == model and state.version == version and state.weight == 100


def rollout_deployer(clients: AwsClients, runtime: TeamRuntime, health: Callable[[str], TargetHealth],
                     say: Say) -> Callable[[str, str, int], None]:
    """Redeploys all at once: the rebuilt endpoint serves nothing yet, so there is no traffic to guard."""
    from gpufleet.rollout.engine import Rollout, RolloutOptions

    def deploy(endpoint: str, model: str, version: int) -> None:
        Rollout(clients, runtime, endpoint, health(endpoint),
                RolloutOptions("all-at-once", bake_s=3.0, poll_s=1.0),
                lambda line: say(f"  {endpoint}: {line}")).deploy(model, version)

    return deploy


def restore_team(clients: AwsClients, runtime: TeamRuntime, deploy: Callable[[str, str, int], None]) -> RestoreReport:
    report = RestoreReport(runtime.team)
    restore_models(clients, runtime, report)
    restore_endpoints(clients, runtime, report, deploy)
    return report
