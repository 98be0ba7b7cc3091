"""Restoring a team from the replica when replication did not deliver everything.

Against the real moto server; the team's resources come from tests/support/aws.py (no Terraform: the
restore is what is tested). The deploy step is a recorder: redeploying through agents is the drill's part.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.dr.restore import restore_team
from gpufleet.local.emulator import Emulator
from gpufleet.registry.export import ENDPOINTS_EXPORT_KEY, EXPORT_KEY
from gpufleet.schema.registry import artifact_key
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.models import get_model_version
from tests.support.aws import create_team_resources

LOST_BUCKET = "dr-lost-region-artifacts"  # where the lost region's registry said the artifacts were


def _endpoint_runtime(name: str) -> dict[str, Any]:
    return {"alb_dns": f"{name}.local", "listener_arn": f"arn:aws:elasticloadbalancing:::listener/{name}",
            "rule_arn": f"arn:aws:elasticloadbalancing:::listener-rule/{name}",
            "target_groups": {"blue": "tg-b", "green": "tg-g"}, "asgs": {"blue": "asg-b", "green": "asg-g"}}


def _replica(emu: Emulator, team: str) -> tuple[AwsClients, TeamRuntime]:
    base = create_team_resources(emu, "dr", team, region="us-west-2")
    runtime = TeamRuntime.model_validate({**base.model_dump(), "endpoints": {
        "api": _endpoint_runtime("api"), "web": _endpoint_runtime("web")}})
    return AwsClients.create("us-west-2", emu.endpoint), runtime


def _export(aws: AwsClients, bucket: str, key: str, docs: list[dict[str, Any]]) -> None:
    body = "".join(json.dumps({"schema": 1, "exported_at": "2026-01-01T00:00:00Z", **d}) + "\n" for d in docs)
    aws.s3.put_object(Bucket=bucket, Key=key, Body=body.encode())


def _endpoint(name: str, model: str, version: int) -> dict[str, Any]:
    return {"endpoint": name, "live": "green", "revision": 7, "variants": {
        "blue": {"model": model, "version": version - 1, "weight": 0},
        "green": {"model": model, "version": version, "weight": 100}}}


def test_missing_and_corrupt_replica_objects_are_reported_by_version_and_the_rest_restored(
        moto_server: Emulator) -> None:
    aws, runtime = _replica(moto_server, "restore")
    bucket = runtime.buckets.artifacts
    records = []
    for version in (1, 2, 3, 4):
        body = f"model {version}".encode()
        records.append({"model_name": "digits", "version": version, "status": "Approved",
                        "sha256": hashlib.sha256(body).hexdigest(), "lineage": {"job_id": f"j{version}"},
                        "artifact_uri": f"s3://{LOST_BUCKET}/{artifact_key('digits', version)}",
                        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"})
        if version == 2:
            continue  # replication never delivered it
        aws.s3.put_object(Bucket=bucket, Key=artifact_key("digits", version),
                          Body=b"tampered" if version == 4 else body)
    _export(aws, bucket, EXPORT_KEY, records)
    _export(aws, bucket, ENDPOINTS_EXPORT_KEY, [_endpoint("api", "digits", 3), _endpoint("web", "digits", 2)])
    deployed: list[tuple[str, str, int]] = []

    report = restore_team(aws, runtime, lambda ep, model, version: deployed.append((ep, model, version)))

    assert report.models_restored == ["digits:1", "digits:3"]
    assert set(report.models_not_restored) == {"digits:2", "digits:4"}
    assert "is not in the replica" in report.models_not_restored["digits:2"]
    assert "sha256" in report.models_not_restored["digits:4"]
    assert deployed == [("api", "digits", 3)]
    assert report.endpoints_not_restored == {"web": "it served digits:2, which was not restored"}
    restored = get_model_version(aws, runtime, "digits", 3)
    assert restored["artifact_uri"] == f"s3://{bucket}/{artifact_key('digits', 3)}"
    assert restored["status"] == "Approved" and restored["lineage"] == {"job_id": "j3"}


def test_a_second_restore_changes_no_record(moto_server: Emulator) -> None:
    aws, runtime = _replica(moto_server, "again")
    body = b"weights"
    aws.s3.put_object(Bucket=runtime.buckets.artifacts, Key=artifact_key("m", 1), Body=body)
    _export(aws, runtime.buckets.artifacts, EXPORT_KEY, [{
        "model_name": "m", "version": 1, "status": "Approved", "sha256": hashlib.sha256(body).hexdigest(),
        "artifact_uri": f"s3://{LOST_BUCKET}/{artifact_key('m', 1)}", "lineage": {}}])
    first = restore_team(aws, runtime, lambda *a: None)
    models = aws.client("dynamodb").scan(TableName=runtime.tables.models)["Items"]

    second = restore_team(aws, runtime, lambda *a: None)

    assert first.models_restored == ["m:1"] and first.changed
    assert second.models_unchanged == ["m:1"] and not second.changed and second.complete
    assert aws.client("dynamodb").scan(TableName=runtime.tables.models)["Items"] == models


def test_every_endpoint_record_write_rewrites_the_endpoints_export(moto_server: Emulator) -> None:
    from gpufleet.registry.export import export_endpoints, read_export
    from gpufleet.store.endpoints import EndpointRecord, EndpointTable, VariantState

    aws, runtime = _replica(moto_server, "export")
    table = EndpointTable(aws.client("dynamodb"), runtime.tables.endpoints,
                          on_change=lambda: export_endpoints(aws, runtime))
    record = table.save(EndpointRecord("api", {"blue": VariantState("digits", 1, 100), "green": VariantState()}))
    record.variants = {"blue": VariantState("digits", 1, 0), "green": VariantState("digits", 2, 100)}
    table.save(record)

    (doc,) = read_export(aws, runtime, key=ENDPOINTS_EXPORT_KEY)
    assert doc["endpoint"] == "api" and doc["live"] == "green" and doc["revision"] == 2
    assert doc["variants"]["green"] == {"model": "digits", "version": 2, "weight": 100}
