"""A team's roles (training hosts, serving hosts, human operators, and the job role that training hosts
hand to job code) and what each may touch.

Every grant names this team's own resources; ``*`` appears only where AWS has no narrower resource,
each with its reason. The roles share one permission boundary built from the same grants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gpufleet.constructs.endpoint import EndpointFleet
from gpufleet.constructs.iam import PermissionBoundary, ScopedRole
from gpufleet.constructs.images import ImageRepository
from gpufleet.constructs.keys import EncryptionKey
from gpufleet.constructs.logs import JobLogGroup
from gpufleet.constructs.messaging import JobQueue, WakeQueue
from gpufleet.constructs.policy import Condition, Statement
from gpufleet.constructs.storage import SecureBucket
from gpufleet.constructs.tables import Table
from gpufleet.constructs.training import GpuTrainingFleet
from gpufleet.schema import METRIC_NAMESPACE
from gpufleet.schema.priority import Priority
from gpufleet.stacks.base import GpufleetStack

# CloudWatch PutMetricData has no resource type; the namespace condition is the narrowest scope.
PUT_METRICS = Statement("PutGpufleetMetrics", ("cloudwatch:PutMetricData",), ("*",),
                        conditions=(Condition("StringEquals", "cloudwatch:namespace", (METRIC_NAMESPACE,)),))
# Describe calls of ELB and Auto Scaling support no resource-level permissions (AWS service
# authorization reference), so they take "*"; they reveal configuration, never data.
# Only what rollouts and `gpufleet fleet` read (rollout/fleet.py): rule weights, target health, capacity.
DESCRIBE_FLEETS = Statement("DescribeFleets", (
    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetHealth", "autoscaling:DescribeAutoScalingGroups"), ("*",))


@dataclass(frozen=True)
class TeamRoles:
    training: ScopedRole
    serving: ScopedRole
    operator: ScopedRole
    job: ScopedRole
    boundary: PermissionBoundary


def role_arn_of(role: ScopedRole) -> str:
    stack = GpufleetStack.of(role)
    assert isinstance(stack, GpufleetStack)
    return role_arn(stack, role.name)


def role_arn(stack: GpufleetStack, name: str) -> str:
    """A role's ARN from its name, so bucket policies can name roles before they exist."""
    return f"arn:{stack.partition}:iam::{stack.account_id}:role/{name}"


def build_roles(stack: GpufleetStack, names: dict[str, str], operators: list[str]) -> TeamRoles:
    """``names`` has keys boundary, training, serving, operator, job. With no operators configured, the
    operator role trusts this account's principals that have MFA. The job role trusts the training role
    alone: the agent assumes it for each job with a session policy narrowing it to that job's prefixes."""
    boundary = PermissionBoundary(stack, "boundary", name=names["boundary"],
                                  description=f"Ceiling of {stack.team}'s roles: its own resources only")
    training = ScopedRole(stack, "training-role", name=names["training"], boundary=boundary,
                          service="ec2.amazonaws.com", instance_profile=True,
                          description=f"{stack.team} training hosts")
    serving = ScopedRole(stack, "serving-role", name=names["serving"], boundary=boundary,
                         service="ec2.amazonaws.com", instance_profile=True,
                         description=f"{stack.team} serving hosts")
    operator = ScopedRole(stack, "operator-role", name=names["operator"], boundary=boundary,
                          principals=operators or [stack.account_root], mfa=not operators,
                          description=f"{stack.team} operators (CLI: jobs, models, rollouts)")
    job = ScopedRole(stack, "job-role", name=names["job"], boundary=boundary, principals=[training.arn],
                     description=f"{stack.team} job code (assumed per job by the training agent)")
    if not operators:
        operator.skip_checks({"CKV_AWS_61": "no teams[].operators configured: principals of this account that IAM "
                                            "lets assume the role, with MFA; list operators to narrow it"})
    return TeamRoles(training, serving, operator, job, boundary)


def grant_team_access(roles: TeamRoles, key: EncryptionKey, buckets: dict[str, SecureBucket],
                      queues: Mapping[Priority, JobQueue],
                      tables: dict[str, Table], training: GpuTrainingFleet, job_logs: JobLogGroup,
                      endpoints: dict[str, EndpointFleet], alarm_arns: list[str]) -> None:
    t, s, o, j = roles.training, roles.serving, roles.operator, roles.job
    for role in (t, s, o, j):
        key.grant_encrypt_decrypt(role, "team")
    # Job code: read inputs, write its checkpoints and logs; nothing of the registry, queue or tables.
    # The agent's session policy narrows each job to its own checkpoint and log prefixes.
    buckets["data"].grant_read(j, "data-bucket")
    buckets["checkpoints"].grant_read_write(j, "checkpoints-bucket")
    buckets["logs"].grant_write(j, "job-log-objects", prefix="jobs/")
    # By name, not the role's ARN attribute: the shared boundary holds this statement, and the job role's
    # trust names the training role, whose boundary that is (a reference would be a dependency cycle).
    t.add_to_policy(Statement("AssumeJobRole", ("sts:AssumeRole",), (role_arn_of(j),)))
    # Training hosts: read data and job code, add model artifacts (never delete one, never touch the
    # registry export), write checkpoints/logs, claim jobs, register versions. No grant on approvals.
    buckets["data"].grant_read(t, "data-bucket")
    buckets["artifacts"].grant_read(t, "job-code", prefix="code/")
    buckets["artifacts"].grant_read(t, "model-artifacts", prefix="models/")
    # Write-once: IAM itself refuses a put without If-None-Match, so no key (an approved one) is replaced.
    buckets["artifacts"].grant_create_only(t, "model-artifacts", prefix="models/")
    buckets["checkpoints"].grant_read_write(t, "checkpoints-bucket")   # restored and synced
    buckets["logs"].grant_write(t, "logs-bucket")   # the job log, shipped when the attempt ends
    for priority, queue in queues.items():
        queue.grant_consume(t, f"{priority}-job-queue")
        queue.grant_send(t, f"{priority}-job-queue")   # an interrupted or deferred job goes back, fresh
    shared_dlq = queues["normal"]   # all priorities share its DLQ
    shared_dlq.grant_dead_letter(t, "job-queue")   # a job given up after max_attempts
    shared_dlq.grant_read_redrive(t, "job-queue")   # the agent reads maxReceiveCount at start (daemon.py)
    tables["jobs"].grant_read_write(t, "jobs-table")
    tables["models"].grant_read_write(t, "models-table")   # the next version number is a query
    training.grant_lifecycle(t, "training")
    job_logs.grant_write(t, "job-logs")
    t.add_to_policy(PUT_METRICS)
    # Serving hosts: read approved models, write captured requests, read endpoint state.
    # The agent fetches the one key the approval pins; any failure rejects the artifact (serving/artifacts.py).
    buckets["artifacts"].grant_read(s, "model-artifacts", prefix="models/", list_bucket=False)
    # Captured requests go in batches of small JSON lines, one put_object each (agent/serving/capture.py).
    buckets["capture"].grant_write(s, "capture-bucket", multipart=False)
    tables["endpoints"].grant_get(s, "endpoints-table")   # the agent follows its endpoint's record
    tables["approvals"].grant_get(s, "approvals-table")   # and the approved artifact of the version it serves
    for fleet in endpoints.values():
        fleet.grant_report_health(s, f"endpoint-{fleet.name}")
    s.add_to_policy(PUT_METRICS)
    # Operators: everything of this team's data plane (the only writer of approvals), plus rollouts and scaling.
    for name, bucket in buckets.items():
        if name != "artifacts":
            bucket.grant_read_write(o, f"{name}-bucket")
    # Artifacts: read all; job code and the registry export are rewritten; model artifacts are write-once,
    # as for training hosts (`gpufleet model register` puts with If-None-Match).
    buckets["artifacts"].grant_read(o, "artifacts-bucket")
    buckets["artifacts"].grant_write(o, "job-code", prefix="code/", multipart=False)
    buckets["artifacts"].grant_write(o, "registry-export", prefix="registry-export/", multipart=False)
    buckets["artifacts"].grant_create_only(o, "model-artifacts", prefix="models/")
    for priority, queue in queues.items():
        queue.grant_send(o, f"{priority}-job-queue")
    for name, table in tables.items():   # job list, the registry and endpoint exports scan
        table.grant_read_write(o, f"{name}-table", scan=True)
    training.grant_scale(o, "training")
    for fleet in endpoints.values():
        fleet.grant_shift_traffic(o, f"endpoint-{fleet.name}")
        fleet.grant_scale(o, f"endpoint-{fleet.name}")
    if alarm_arns:
        o.add_to_policy(Statement("ReadAlarms", ("cloudwatch:DescribeAlarms",), tuple(alarm_arns)))
    o.add_to_policy(DESCRIBE_FLEETS)


def grant_wake(roles: TeamRoles, wake: WakeQueue) -> None:
    """Whoever sends a job sends its hint (operators submit, agents re-queue); idle agents wait for hints."""
    wake.grant_send(roles.operator, "wake-queue")
    wake.grant_send(roles.training, "wake-queue")
    wake.grant_wait(roles.training, "wake-queue")


def grant_images(roles: TeamRoles, images: ImageRepository) -> None:
    """Hosts pull the team's images (container jobs and endpoints); operators push them."""
    images.grant_pull(roles.training, "team-images")
    images.grant_pull(roles.serving, "team-images")
    images.grant_push(roles.operator, "team-images")
