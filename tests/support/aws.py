"""Test support: team resources created straight in the emulator with boto3.

Agent and CLI tests use this instead of a Terraform apply (about 80 s) when the stacks are not what
they test. Shapes come from ``gpufleet.schema``, the same module the stacks use.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from gpufleet.local.emulator import Emulator
from gpufleet.schema import BUCKETS, TABLE_KEYS
from gpufleet.schema.priority import PRIORITIES, QUEUE_SUFFIX
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.wake import HINT_RETENTION_S


def client(emu: Emulator, service: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, **emu.boto_kwargs(region))  # type: ignore[call-overload]


def create_team_resources(emu: Emulator, platform: str = "test", team: str = "alpha",
                          region: str = "us-east-1", max_receives: int = 3) -> TeamRuntime:
    """Buckets, the priority queues + DLQ and tables for one team, named as the team stack names them."""
    prefix = f"{platform}-{team}"
    s3, sqs, ddb = client(emu, "s3", region), client(emu, "sqs", region), client(emu, "dynamodb", region)
    buckets = {}
    for b in BUCKETS:
        name = f"{prefix}-{b}"
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **kwargs)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        buckets[b] = name
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queues = {p: sqs.create_queue(QueueName=f"{prefix}-jobs{QUEUE_SUFFIX[p]}", Attributes={
        "VisibilityTimeout": "300",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
    })["QueueUrl"] for p in PRIORITIES}
    wake_url = sqs.create_queue(QueueName=f"{prefix}-jobs-wake", Attributes={
        "MessageRetentionPeriod": str(HINT_RETENTION_S)})["QueueUrl"]
    tables = {}
    for table, keys in TABLE_KEYS.items():
        name = f"{prefix}-{table}"
        ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t, _ in keys],
            KeySchema=[{"AttributeName": a, "KeyType": k} for a, _, k in keys],
        )
        tables[table] = name
    return TeamRuntime.model_validate({
        "platform": platform, "team": team, "region": region, "buckets": buckets,
        "queue_url": queues["normal"], "queues": queues, "dlq_url": dlq_url, "wake_url": wake_url, "tables": tables,
        "training": {"asg": f"{prefix}-training"}, "endpoints": {},
        # The URL the team stack's ECR repository has (moto's account); local agents use local images.
        "image_repository": f"123456789012.dkr.ecr.{region}.amazonaws.com/{prefix}-images",
    })
