"""A team stack: buckets, job queue and tables for one team."""

from __future__ import annotations

from cdktf import Fn, TerraformOutput
from constructs import Construct

from gpufleet.config import PlatformConfig, Team
from gpufleet.names import resource_name, stack_name
from gpufleet.providers import DynamodbTable, S3Bucket, SqsQueue
from gpufleet.schema import BUCKETS, RUNTIME_OUTPUT, TABLE_KEYS
from gpufleet.stacks.base import GpufleetStack
from gpufleet.stacks.platform import PlatformStack
from gpufleet.target import Target


class TeamStack(GpufleetStack):
    def __init__(self, scope: Construct, cfg: PlatformConfig, team: Team, platform: PlatformStack,
                 target: Target, region: str | None = None) -> None:
        super().__init__(scope, stack_name(team.name), cfg, target, team=team.name, region=region)
        self.add_dependency(platform)
        name = cfg.platform.name

        def aws_name(thing: str, kind: str = "default") -> str:
            return resource_name(name, team.name, thing, kind)

        buckets = {b: S3Bucket(self, f"bucket-{b}", bucket=aws_name(b, "s3"), force_destroy=target.local)
                   for b in BUCKETS}
        dlq = SqsQueue(self, "dlq", name=aws_name("jobs-dlq", "sqs"), sqs_managed_sse_enabled=True)
        queue = SqsQueue(self, "queue", name=aws_name("jobs", "sqs"), sqs_managed_sse_enabled=True,
                         visibility_timeout_seconds=300,
                         redrive_policy=Fn.jsonencode({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 5}))
        tables = {
            t: DynamodbTable(self, f"table-{t}", name=aws_name(t), billing_mode="PAY_PER_REQUEST",
                             hash_key=keys[0][0], range_key=keys[1][0] if len(keys) > 1 else None,
                             attribute=[{"name": a, "type": typ} for a, typ, _ in keys])
            for t, keys in TABLE_KEYS.items()
        }
        TerraformOutput(self, RUNTIME_OUTPUT, value=Fn.jsonencode({
            "platform": name, "team": team.name, "region": self.region,
            "buckets": {b: bucket.bucket for b, bucket in buckets.items()},
            "queue_url": queue.url, "dlq_url": dlq.url,
            "tables": {t: table.name for t, table in tables.items()},
            "training": {"asg": aws_name("training", "asg")},
            "endpoints": {},
        }))
