"""The shared platform stack: network, platform key, log bucket and alarm topic every team builds on."""

from __future__ import annotations

from constructs import Construct

from gpufleet.config import PlatformConfig
from gpufleet.constructs.keys import EncryptionKey
from gpufleet.constructs.messaging import AlarmTopic
from gpufleet.constructs.network import Network
from gpufleet.constructs.policy import Condition, Statement, render_policies
from gpufleet.constructs.storage import SecureBucket
from gpufleet.names import resource_name, stack_name
from gpufleet.stacks.base import GpufleetStack
from gpufleet.target import Target

LOG_RETENTION_DAYS = 365
# Regions older than August 2022 deliver ALB access logs from a regional ELB account, not the service
# principal (AWS docs, "Enable access logs for your Application Load Balancer").
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "ca-central-1": "985666609251", "eu-west-1": "156460612806",
    "eu-west-2": "652711504416", "eu-west-3": "009996457667", "eu-central-1": "054676820928",
    "eu-north-1": "897822967062", "ap-northeast-1": "582318560864", "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266", "ap-south-1": "718504428378",
    "sa-east-1": "507241528517",
}


class PlatformStack(GpufleetStack):
    """Team stacks read ``network``, ``log_bucket`` and ``alarm_topic`` through cross-stack references."""

    def __init__(self, scope: Construct, cfg: PlatformConfig, target: Target, region: str | None = None) -> None:
        super().__init__(scope, stack_name(None), cfg, target, region=region)
        p = cfg.platform
        self.key = EncryptionKey(self, "key", alias=f"{p.name}/platform", description=f"{p.name} platform key",
                                 account_root=self.account_root, account_id=self.account_id,
                                 services=("cloudwatch.amazonaws.com",))
        self.log_bucket = self._log_bucket(self.global_name(resource_name(p.name, None, "logs", "s3")))
        self.alarm_topic = AlarmTopic(self, "alarms", name=resource_name(p.name, None, "alarms"),
                                      key_id=self.key.key_id)
        internet_facing = any(ep.internet_facing for t in cfg.teams for ep in t.endpoints)
        self.network = Network(self, "network", name=resource_name(p.name, None, "vpc"), cidr=p.vpc_cidr,
                               az_count=p.az_count, region=self.region, flow_log_bucket_arn=self.log_bucket.arn,
                               public_subnets=internet_facing or p.nat_gateway, nat=p.nat_gateway)
        render_policies(self)

    def _log_bucket(self, name: str) -> SecureBucket:
        """Access logs, flow logs and ALB logs. S3 and ALB log delivery write only SSE-S3 buckets."""
        bucket = SecureBucket(self, "log-bucket", name=name, key_arn=None, access_logs=None,
                              enforce_tls=self.secure_bucket_policies, expire_days=LOG_RETENTION_DAYS,
                              force_destroy=self.target.local, lifecycle_rules=self.bucket_lifecycle_rules)
        bucket.skip_checks({
            "CKV_AWS_18": "this is the access-log bucket; logging it into itself would loop",
            "CKV_AWS_145": "S3 server access logs and ALB access logs can only be delivered to SSE-S3 buckets",
            "CKV_AWS_144": "logs are not replicated to the DR region; they are rebuilt there",
            "CKV2_AWS_62": "log delivery needs no event notifications",
        })
        source = (Condition("StringEquals", "aws:SourceAccount", (self.account_id,)),)
        objects = (f"{bucket.arn}/*",)
        bucket.add_to_resource_policy(Statement(
            "S3AccessLogDelivery", ("s3:PutObject",), objects, principals={"Service": ("logging.s3.amazonaws.com",)},
            conditions=source))
        bucket.add_to_resource_policy(Statement(
            "FlowLogDelivery", ("s3:PutObject",), objects, principals={"Service": ("delivery.logs.amazonaws.com",)},
            conditions=source))
        bucket.add_to_resource_policy(Statement(
            "FlowLogAclCheck", ("s3:GetBucketAcl",), (bucket.arn,),
            principals={"Service": ("delivery.logs.amazonaws.com",)}, conditions=source))
        bucket.add_to_resource_policy(Statement(
            "AlbLogDelivery", ("s3:PutObject",), (f"{bucket.arn}/alb/*",),
            principals={"Service": ("logdelivery.elasticloadbalancing.amazonaws.com",)}))
        if self.region in ELB_LOG_ACCOUNTS:
            elb_account = f"arn:{self.partition}:iam::{ELB_LOG_ACCOUNTS[self.region]}:root"
            bucket.add_to_resource_policy(Statement(
                "AlbLogDeliveryLegacyRegion", ("s3:PutObject",), (f"{bucket.arn}/alb/*",),
                principals={"AWS": (elb_account,)}))
        return bucket
