"""The drill's region loss: region A's team resources deleted from the emulator, its hosts gone.

Global names (IAM, the replica bucket in the DR region) stay, as they would after a real regional
outage; the lost region's Terraform state is left untouched, the rebuild never reads it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from botocore.exceptions import ClientError

from gpufleet.aws import AwsClients
from gpufleet.callrecord import Caller
from gpufleet.local import cloud
from gpufleet.schema import VARIANTS
from gpufleet.schema.runtime import TeamRuntime, load_runtime
from gpufleet.workspace import teams_dir


def wipe_region(root: Path, endpoint: str, teams: list[str]) -> list[str]:
    """Kill the local cloud (hosts die with the region), delete each team's regional resources.
    Returns what was deleted, one line each."""
    cloud.stop(root, timeout_s=5.0)  # abrupt: a lost region does not drain its hosts
    deleted: list[str] = []
    for team in teams:
        path = teams_dir(root) / f"{team}.json"
        runtime = load_runtime(path)
        deleted += _delete_team(AwsClients.create(runtime.region, endpoint, Caller("stand-in")), runtime)
        path.unlink()
    return deleted


def _delete_team(aws: AwsClients, rt: TeamRuntime) -> list[str]:
    out = []
    asg = aws.client("autoscaling")
    for name in [rt.training.asg] + [getattr(ep.asgs, v) for ep in rt.endpoints.values() for v in VARIANTS]:
        with contextlib.suppress(ClientError):
            asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
            out.append(f"asg {name}")
    for table in (rt.tables.jobs, rt.tables.models, rt.tables.endpoints, rt.tables.approvals):
        aws.client("dynamodb").delete_table(TableName=table)
        out.append(f"table {table}")
    for url in rt.all_queue_urls:
        aws.sqs.delete_queue(QueueUrl=url)
        out.append(f"queue {url.rsplit('/', 1)[-1]}")
    for bucket in rt.buckets.model_dump().values():
        _delete_bucket(aws, bucket)
        out.append(f"bucket {bucket}")
    return out


def _delete_bucket(aws: AwsClients, bucket: str) -> None:
    for page in aws.s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        items = page.get("Versions", []) + page.get("DeleteMarkers", [])
        if items:
            aws.s3.delete_objects(Bucket=bucket, Delete={"Objects": [
                {"Key": i["Key"], "VersionId": i["VersionId"]} for i in items]})
    aws.s3.delete_bucket(Bucket=bucket)
