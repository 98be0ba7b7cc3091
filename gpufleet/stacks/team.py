"""A team stack: encrypted buckets, job queue, tables, least-privilege roles, a GPU training fleet,
endpoint fleets, alarms and a dashboard, and the team runtime config as an output."""

from __future__ import annotations

from typing import Any

from cdktf import Fn, TerraformOutput
from constructs import Construct

from gpufleet.config import Endpoint, PlatformConfig, Team
from gpufleet.constructs.blocks import blocks
from gpufleet.constructs.dashboard import Dashboard, Graph
from gpufleet.constructs.endpoint import VARIANTS, EndpointFleet
from gpufleet.constructs.iam import ScopedRole
from gpufleet.constructs.images import ImageRepository
from gpufleet.constructs.keys import EncryptionKey
from gpufleet.constructs.launch import GpuLaunchTemplate
from gpufleet.constructs.logs import JobLogGroup
from gpufleet.constructs.messaging import JobQueue, WakeQueue
from gpufleet.constructs.policy import Statement, render_policies, sid
from gpufleet.constructs.storage import AccessLogs, SecureBucket
from gpufleet.constructs.tables import Table
from gpufleet.constructs.training import GpuTrainingFleet
from gpufleet.names import resource_name, stack_name, team_resource_name
from gpufleet.providers import (
    AwsProvider,
    AwsProviderDefaultTags,
    CloudwatchMetricAlarm,
    DataAwsKmsAlias,
    SecurityGroup,
)
from gpufleet.schema import BUCKETS, METRIC_NAMESPACE, RUNTIME_OUTPUT, TABLE_KEYS, TAG_ENDPOINT, TAG_ROLE
from gpufleet.schema.priority import PRIORITIES, QUEUE_SUFFIX, Priority
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.stacks.base import GpufleetStack
from gpufleet.stacks.platform import PlatformStack
from gpufleet.stacks.team_access import build_roles, grant_images, grant_team_access, grant_wake, role_arn
from gpufleet.stacks.team_fleets import Ami, agent_user_data, lookup_ami
from gpufleet.target import Target

# The agent extends a claimed message's visibility every minute; five minutes tolerates missed beats.
QUEUE_VISIBILITY_S = 300
CHECKPOINT_VERSION_DAYS = 14  # old checkpoint versions are only needed to resume a recent job


class TeamStack(GpufleetStack):
    def __init__(self, scope: Construct, cfg: PlatformConfig, team: Team, platform: PlatformStack,
                 target: Target, region: str | None = None) -> None:
        super().__init__(scope, stack_name(team.name), cfg, target, team=team.name, region=region)
        self.add_dependency(platform)
        self.spec, self.platform_stack = team, platform
        self.key = EncryptionKey(self, "key", alias=f"{cfg.platform.name}/{team.name}",
                                 description=f"{team.name} team data key", account_root=self.account_root,
                                 account_id=self.account_id)
        role_names = {r: self.aws_name(f"{r}", "iam_role")
                      for r in ("boundary", "training", "serving", "operator", "job")}
        self.replication_role_name = self.aws_name("replication", "iam_role")
        principals = [role_arn(self, n) for r, n in role_names.items() if r != "boundary"]
        self.buckets = self._buckets(principals, role_arn(self, self.replication_role_name))
        self.queues = self._job_queues()
        self.queue = self.queues["normal"]
        self.wake = WakeQueue(self, "jobs-wake", name=self.aws_name("jobs-wake", "sqs"), key_arn=self.key.arn)
        self.tables = {t: Table(self, f"table-{t}", name=self.aws_name(t, "dynamodb"), keys=keys,
                                key_arn=self.key.arn, region=self.region, deletion_protection=not target.local)
                       for t, keys in TABLE_KEYS.items()}
        self.roles = build_roles(self, role_names, list(team.operators))
        self.images = ImageRepository(self, "images", name=self.aws_name("images"), key_arn=self.key.arn,
                                      force_delete=target.local)
        self.job_logs = JobLogGroup(self, "job-logs", name=f"/{cfg.platform.name}/{team.name}/training-jobs",
                                    key=self.key, region=self.region,
                                    arn_prefix=f"arn:{self.partition}:logs:{self.region}:{self.account_id}")
        if self.replicates and cfg.platform.dr_region:
            self._replicate_artifacts(cfg.platform.dr_region, principals)
        if self.rebuild:
            self._grant_replica_key()
        self.endpoints = {ep.name: self._endpoint_front(ep) for ep in team.endpoints}
        self.runtime = self._runtime()
        ami = lookup_ami(self, cfg.platform.gpu_ami)
        self.training = self._training_fleet(ami)
        for ep in team.endpoints:
            self._endpoint_capacity(ep, ami)
        alarms = self._queue_alarms() + [n for f in self.endpoints.values() for n in f.alarm_names]
        grant_team_access(self.roles, self.key, self.buckets, self.queues, self.tables, self.training,
                          self.job_logs, self.endpoints, [self.alarm_arn(a) for a in alarms])
        grant_images(self.roles, self.images)
        grant_wake(self.roles, self.wake)
        self._dashboard()
        render_policies(self)
        TerraformOutput(self, "image_repository", value=self.images.url,
                        description="The team's ECR repository for job and endpoint images (image: in specs)")
        TerraformOutput(self, RUNTIME_OUTPUT, value=Fn.jsonencode(self.runtime),
                        description="Team runtime config for the CLI and agents (gpufleet.schema.runtime.TeamRuntime)")

    def aws_name(self, thing: str, kind: str = "default") -> str:
        return team_resource_name(self.cfg.platform.name, self.spec.name, thing, kind,
                                  self.region if self.rebuild else None)

    @property
    def replicates(self) -> bool:
        """Artifacts replicate when a DR region is set, except from a rebuilt stack (it is the DR copy)."""
        return bool(self.cfg.platform.dr_region) and not self.rebuild

    @property
    def replica_bucket_name(self) -> str:
        """The artifacts replica in platform.dr_region; a rebuild there adopts it as its artifacts bucket."""
        return resource_name(self.cfg.platform.name, self.spec.name, "artifacts-dr", "s3")

    def alarm_arn(self, name: str) -> str:
        return f"arn:{self.partition}:cloudwatch:{self.region}:{self.account_id}:alarm:{name}"

    @property
    def asg_arn_prefix(self) -> str:
        return f"arn:{self.partition}:autoscaling:{self.region}:{self.account_id}"

    def _buckets(self, team_principals: list[str], replication_role: str) -> dict[str, SecureBucket]:
        logs = self.platform_stack.log_bucket.name
        buckets = {}
        for b in BUCKETS:
            adopt = self.rebuild and b == "artifacts"
            bucket = SecureBucket(
                self, f"bucket-{b}", name=self.replica_bucket_name if adopt else self.aws_name(b, "s3"),
                key_arn=self.key.arn,
                access_logs=AccessLogs(logs, f"s3/{self.spec.name}/{b}/"),
                enforce_tls=self.secure_bucket_policies,
                only_principals=(team_principals + ([replication_role] if b == "artifacts" and self.replicates
                                                    else []))
                if self.secure_bucket_policies else (),
                noncurrent_expiry_days=CHECKPOINT_VERSION_DAYS if b == "checkpoints" else 90,
                force_destroy=self.target.local,
                lifecycle_rules=self.bucket_lifecycle_rules)
            bucket.skip_checks({"CKV2_AWS_62": "no consumer of bucket events; the agents poll SQS and DynamoDB"})
            if b != "artifacts" or not self.cfg.platform.dr_region or self.rebuild:
                bucket.skip_checks({"CKV_AWS_144": "only artifacts (models, registry export) are replicated, and "
                                                   "only when platform.dr_region is set; the rest is rebuildable"})
            if adopt:  # the replica's data stays: Terraform imports the bucket instead of creating it
                bucket.bucket.import_from(self.replica_bucket_name)
            buckets[b] = bucket
        return buckets

    def _replicate_artifacts(self, dr_region: str, team_principals: list[str]) -> None:
        """Artifacts (models and the registry export) replicate to a bucket in the DR region."""
        dr = AwsProvider(self, "aws-dr", alias="dr", region=dr_region,
                         default_tags=[AwsProviderDefaultTags(tags=self.tags)], **self._provider_args())
        key = EncryptionKey(self, "dr-key", alias=f"{self.cfg.platform.name}/{self.spec.name}-dr",
                            description=f"{self.spec.name} DR replica key", account_root=self.account_root,
                            account_id=self.account_id, provider=dr)
        replica = SecureBucket(
            self, "bucket-artifacts-dr", name=self.aws_name("artifacts-dr", "s3"), key_arn=key.arn,
            access_logs=None, enforce_tls=self.secure_bucket_policies, provider=dr,
            only_principals=team_principals if self.secure_bucket_policies else (),
            noncurrent_expiry_days=90, force_destroy=self.target.local,
            lifecycle_rules=self.bucket_lifecycle_rules)
        replica.skip_checks({
            "CKV_AWS_18": "the DR replica is written only by S3 replication; reads are logged on the source",
            "CKV_AWS_144": "this is the cross-region replica",
            "CKV2_AWS_62": "no consumer of bucket events in the DR region"})
        role = ScopedRole(self, "replication-role", name=self.replication_role_name, boundary=self.roles.boundary,
                          service="s3.amazonaws.com", description=f"{self.spec.name} artifacts replication")
        self.buckets["artifacts"].replicate_to(replica, role=role, role_arn=role.arn, source_key_arn=self.key.arn,
                                               replica_key_arn=key.arn, ignore_rule_drift=self.target.local)

    def _grant_replica_key(self) -> None:
        """Replicated artifacts stay encrypted with the DR replica key the lost region's stack made here."""
        alias = DataAwsKmsAlias(self, "replica-key", name=f"alias/{self.cfg.platform.name}/{self.spec.name}-dr")
        for role in (self.roles.training, self.roles.serving, self.roles.operator):
            role.add_to_policy(Statement(sid("Decrypt", "replica", "Key"), ("kms:Decrypt",),
                                         (alias.target_key_arn,)))

    def _job_queues(self) -> dict[Priority, JobQueue]:
        """One queue per priority, sharing normal's DLQ. Normal keeps the construct id and name of the
        single queue from before priorities, so an existing deployment keeps its queue and messages."""
        normal = JobQueue(self, "jobs", name=self.aws_name("jobs", "sqs"), dlq_name=self.aws_name("jobs-dlq", "sqs"),
                          key_arn=self.key.arn, visibility_timeout_s=QUEUE_VISIBILITY_S,
                          ignore_redrive_drift=self.target.local)
        others = {p: JobQueue(self, f"jobs{QUEUE_SUFFIX[p]}", name=self.aws_name(f"jobs{QUEUE_SUFFIX[p]}", "sqs"),
                              dead_letter=normal, key_arn=self.key.arn, visibility_timeout_s=QUEUE_VISIBILITY_S,
                              ignore_redrive_drift=self.target.local)
                  for p in PRIORITIES if p != "normal"}
        return {p: normal if p == "normal" else others[p] for p in PRIORITIES}

    def _queue_alarms(self) -> list[str]:
        name = self.aws_name("jobs-dlq-not-empty")
        CloudwatchMetricAlarm(self, "dlq-alarm", alarm_name=name, namespace="AWS/SQS",
                              metric_name="ApproximateNumberOfMessagesVisible",
                              dimensions={"QueueName": self.queue.dlq_name}, statistic="Maximum", period=300,
                              evaluation_periods=1, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
                              treat_missing_data="notBreaching", alarm_actions=[self.platform_stack.alarm_topic.arn],
                              alarm_description="Jobs failed repeatedly and reached the dead-letter queue")
        return [name]

    def _endpoint_front(self, ep: Endpoint) -> EndpointFleet:
        net = self.platform_stack.network
        return EndpointFleet(
            self, f"endpoint-{ep.name}", name=self.aws_name(ep.name, "alb"),
            target_group_names={v: self.aws_name(f"{ep.name}-{v}", "target_group") for v in VARIANTS},
            vpc_id=net.vpc_id, vpc_cidr=net.cidr,
            subnet_ids=net.public_subnet_ids if ep.internet_facing else net.private_subnet_ids,
            internal=not ep.internet_facing, certificate_arn=ep.certificate_arn, client_cidrs=ep.client_cidrs,
            waf=ep.internet_facing and ep.waf,
            access_logs_bucket=self.platform_stack.log_bucket.name,
            alarm_topic_arn=self.platform_stack.alarm_topic.arn, tags={TAG_ROLE: "serving", TAG_ENDPOINT: ep.name})

    def _runtime(self) -> dict[str, Any]:
        images = {ep.name: {"image": ep.image} for ep in self.spec.endpoints if ep.image}
        runtime = {
            "platform": self.cfg.platform.name, "team": self.spec.name, "region": self.region,
            "buckets": {b: bucket.name for b, bucket in self.buckets.items()},
            "queue_url": self.queue.url, "dlq_url": self.queue.dlq_url,
            "queues": {p: q.url for p, q in self.queues.items()}, "wake_url": self.wake.url,
            "tables": {t: table.name for t, table in self.tables.items()},
            "job_role_arn": self.roles.job.arn,
            "training": {"asg": self.aws_name("training", "asg"), "log_group": self.job_logs.name},
            "image_repository": self.images.url,
            "endpoints": {name: {
                "alb_dns": f.alb_dns, "listener_arn": f.listener_arn, "rule_arn": f.rule_arn,
                "target_groups": {v: f.target_groups[v].arn for v in VARIANTS},
                "asgs": {v: self.aws_name(f"{name}-{v}", "asg") for v in VARIANTS},
                "alarms": list(f.alarm_names), **images.get(name, {})} for name, f in self.endpoints.items()},
        }
        TeamRuntime.model_validate(runtime)  # the contract the CLI and agents read
        return runtime

    def _launch_template(self, lt_id: str, name: str, ami: Ami, profile: str | None, sg_ids: list[str],
                         user_data: str, tags: dict[str, str], instance_type: str | None = None) -> GpuLaunchTemplate:
        assert profile is not None, "instance roles always have a profile"
        return GpuLaunchTemplate(self, lt_id, name=self.aws_name(name, "launch_template"), ami_id=ami.id,
                                 root_device_name=ami.root_device_name,
                                 root_volume_gb=self.spec.training.root_volume_gb, instance_profile=profile,
                                 security_group_ids=sg_ids, user_data=user_data, tags={**self.tags, **tags},
                                 instance_type=instance_type,
                                 ignore_changes=["tag_specifications"] if self.target.local else ())

    def _training_fleet(self, ami: Ami) -> GpuTrainingFleet:
        net = self.platform_stack.network
        sg = SecurityGroup(self, "training-sg", name=self.aws_name("training"), vpc_id=net.vpc_id,
                           description=f"{self.spec.name} training hosts",
                           ingress=blocks([{"description": "Multi-node rendezvous and collectives between team hosts",
                                     "protocol": "tcp", "from_port": 0, "to_port": 65535, "self_attribute": True}]),
                           egress=blocks([{"description": "HTTPS to AWS APIs; collectives to team hosts",
                                    "protocol": "tcp", "from_port": 0, "to_port": 65535, "self_attribute": True},
                                   {"description": "HTTPS to AWS APIs", "protocol": "tcp", "from_port": 443,
                                    "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]))
        tags = {TAG_ROLE: "training"}
        lt = self._launch_template("training-lt", "training", ami, self.roles.training.profile_name, [sg.id],
                                   agent_user_data(self.runtime, "training"), tags)
        spec = self.spec.training
        return GpuTrainingFleet(self, "training", name=self.aws_name("training", "asg"), launch_template=lt,
                                subnet_ids=net.private_subnet_ids, instance_types=spec.instance_types,
                                on_demand_base=spec.on_demand_base, spot_percentage=spec.spot_percentage,
                                max_instances=spec.max_instances,
                                queue_names=[q.name for q in self.queues.values()],
                                asg_arn_prefix=self.asg_arn_prefix, tags={**self.tags, **tags})

    def _endpoint_capacity(self, ep: Endpoint, ami: Ami) -> None:
        fleet = self.endpoints[ep.name]
        for v in VARIANTS:
            tags = {TAG_ROLE: "serving", TAG_ENDPOINT: ep.name, "gpufleet:variant": v}
            lt = self._launch_template(f"lt-{ep.name}-{v}", f"{ep.name}-{v}", ami, self.roles.serving.profile_name,
                                       [fleet.host_sg.id], agent_user_data(self.runtime, "serving", ep.name, v), tags,
                                       ep.instance_type)
            # Green idles at zero until a rollout warms it up (rollouts own its size).
            fleet.add_variant(v, asg_name=self.aws_name(f"{ep.name}-{v}", "asg"), launch_template=lt,
                              min_instances=ep.min_instances if v == "blue" else 0, max_instances=ep.max_instances,
                              target_requests=ep.target_requests_per_instance, asg_arn_prefix=self.asg_arn_prefix)

    def _dashboard(self) -> None:
        graphs = [
            Graph("Job queues", [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", name]
                                 for name in [*(q.name for q in self.queues.values()), self.queue.dlq_name]],
                  "Maximum"),
            Graph("Training hosts", [["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName",
                                      self.training.name]], "Maximum"),
            Graph("Agent GPU utilization", [[METRIC_NAMESPACE, "GPUUtilization", "Team", self.spec.name]], "Average"),
        ]
        for name, fleet in self.endpoints.items():
            graphs.append(Graph(f"{name}: requests and 5xx", [
                ["AWS/ApplicationELB", m, "LoadBalancer", fleet.alb.arn_suffix]
                for m in ("RequestCount", "HTTPCode_Target_5XX_Count")]))
        Dashboard(self, "dashboard", name=self.aws_name("dashboard", "dashboard"), region=self.region, graphs=graphs)
