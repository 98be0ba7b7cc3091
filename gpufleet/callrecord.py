"""The call record: every AWS call a gpufleet process makes, with who made it and what it targeted.

``gpufleet audit`` evaluates the record against the synthesized IAM policies and network, because the
emulator judges neither. A recorder hangs on botocore's event system (``provide-client-params`` to see
the API parameters, ``after-call`` for the status and the KMS key S3 used), so no call is wrapped.

Each line of ``<dir>/<role>-<pid>.jsonl`` is one call::

    {"role": "training", "team": "ml", "service": "sqs", "operation": "SendMessage", "region": "us-east-1",
     "targets": [["sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:demo-ml-jobs"]], "status": 200,
     "context": {}, "kms_key": null}

``context`` holds the condition keys the call carries that gpufleet's policies test (``cloudwatch:namespace``;
for S3 writes ``s3:ObjectCreationOperation`` and, when sent, ``s3:if-none-match`` / ``s3:if-match``).

``targets`` pairs each IAM action the call needs with the resource it needs it on, derived from the request
parameters by the per-service rules below (the same rules read CloudTrail's ``requestParameters``). An ARN
whose account the parameters do not carry has an empty account field; the audit fills in the audited one.

Who a process is comes from the environment (``GPUFLEET_CALL_ROLE``, ``GPUFLEET_CALL_TEAM``) or from the
agent's config; where the record goes from ``GPUFLEET_CALL_RECORD``. Without a directory nothing is recorded.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROLE_ENV = "GPUFLEET_CALL_ROLE"
TEAM_ENV = "GPUFLEET_CALL_TEAM"
RECORD_ENV = "GPUFLEET_CALL_RECORD"
# Processes that stand in for AWS itself in local mode (the local cloud's ALB metrics and alarms, the DR
# drill's replication and region loss): recorded, but no platform role makes these calls on AWS.
STAND_IN_ROLES = ("local-cloud", "stand-in")
FLUSH_EVERY = 64    # lines buffered before an append
FLUSH_AFTER_S = 1.0  # ... or this long after the first one: the record lags the calls by at most this

# IAM's service prefix where it differs from botocore's service name.
IAM_PREFIX = {"elbv2": "elasticloadbalancing", "application-autoscaling": "application-autoscaling"}

# Operations whose IAM action is not ``<prefix>:<operation>``.
S3_ACTIONS = {
    "HeadObject": "GetObject", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket", "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions", "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject", "DeleteObjects": "DeleteObject", "ListParts": "ListMultipartUploadParts",
    "CopyObject": "PutObject", "UploadPartCopy": "PutObject",
}
# S3 writes (all s3:PutObject to IAM) and their ``s3:ObjectCreationOperation``: true for the requests that
# create the object, false for a multipart upload's create and parts, which take no conditional header
# (AWS, "Enforce conditional writes on Amazon S3 buckets").
OBJECT_CREATION = {"PutObject": True, "CompleteMultipartUpload": True, "CopyObject": True,
                   "CreateMultipartUpload": False, "UploadPart": False, "UploadPartCopy": False}
BATCH_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
                 "ChangeMessageVisibilityBatch": "ChangeMessageVisibility", "TransactGetItems": "GetItem"}
DYNAMO_TRANSACT_ITEMS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                         "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


@dataclass(frozen=True)
class Caller:
    role: str                # training | serving | operator | local-cloud | stand-in | ...
    team: str | None = None


@dataclass
class Call:
    role: str
    team: str | None
    service: str             # botocore's service name (s3, sqs, elbv2, ...)
    operation: str
    region: str
    targets: list[tuple[str, str]] = field(default_factory=list)   # (IAM action, resource ARN or "*")
    status: int | None = None
    context: dict[str, str] = field(default_factory=dict)           # condition keys the call carries
    kms_key: str | None = None                                       # the key S3 used for the object

    @property
    def actions(self) -> list[str]:
        return sorted({a for a, _ in self.targets})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Call:
        return cls(role=data["role"], team=data.get("team"), service=data["service"], operation=data["operation"],
                   region=data["region"], targets=[(a, r) for a, r in data.get("targets", [])],
                   status=data.get("status"), context=dict(data.get("context") or {}), kms_key=data.get("kms_key"))


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def assumed_role(arn: str) -> str | None:
    """The role of a role session's ARN (``arn:<partition>:sts::<account>:assumed-role/<role>/<session>``,
    as STS and CloudTrail name the caller), else None: a user, a service, the account root."""
    if ":assumed-role/" not in arn:
        return None
    return arn.split(":assumed-role/", 1)[1].split("/", 1)[0] or None


class _Params:
    """Request parameters by their API name, whether given as boto3 (``QueueUrl``) or CloudTrail writes
    them (``queueUrl``, ``bucketName``)."""

    ALIASES = {"bucket": ("bucket", "bucketname")}

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.raw = {k.lower(): v for k, v in params.items()}

    def get(self, name: str) -> Any:
        for key in self.ALIASES.get(name.lower(), (name.lower(),)):
            if self.raw.get(key) not in (None, ""):
                return self.raw[key]
        return None


Rule = Callable[[str, _Params, str, str], list[tuple[str, str]]]


def _s3(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
    bucket, key = p.get("Bucket"), p.get("Key")
    if not bucket:
        return [(action, "*")]
    if action == "s3:DeleteObject" and isinstance(p.get("Delete"), Mapping):
        return [(action, f"arn:{part}:s3:::{bucket}/{o['Key']}") for o in p.get("Delete").get("Objects", [])]
    if key is None:
        return [(action, f"arn:{part}:s3:::{bucket}")]
    if action == "s3:GetObject" and p.get("VersionId"):
        action = "s3:GetObjectVersion"
    out = [(action, f"arn:{part}:s3:::{bucket}/{key}")]
    source = p.get("CopySource")
    if isinstance(source, Mapping):
        out.append(("s3:GetObject", f"arn:{part}:s3:::{source['Bucket']}/{source['Key']}"))
    elif isinstance(source, str):
        out.append(("s3:GetObject", f"arn:{part}:s3:::{source.lstrip('/').split('?')[0]}"))
    return out


def _queue_arn(url: str, region: str, part: str) -> str:
    path = urlparse(url).path.strip("/").split("/")
    account, name = (path[0], path[1]) if len(path) >= 2 else ("", path[-1])
    return f"arn:{part}:sqs:{region}:{account}:{name}"


def _sqs(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
    if p.get("QueueUrl"):
        return [(action, _queue_arn(p.get("QueueUrl"), region, part))]
    if p.get("QueueName"):
        return [(action, f"arn:{part}:sqs:{region}:{p.get('QueueOwnerAWSAccountId') or ''}:{p.get('QueueName')}")]
    return [(action, "*")]


def _table_arn(name: str, region: str, part: str) -> str:
    return name if name.startswith("arn:") else f"arn:{part}:dynamodb:{region}::table/{name}"


def _dynamodb(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
    items = p.get("TransactItems")
    if isinstance(items, list):
        return [(f"dynamodb:{DYNAMO_TRANSACT_ITEMS[kind]}", _table_arn(body["TableName"], region, part))
                for item in items for kind, body in item.items() if kind in DYNAMO_TRANSACT_ITEMS]
    if isinstance(p.get("RequestItems"), Mapping):
        return [(action, _table_arn(t, region, part)) for t in p.get("RequestItems")]
    table = p.get("TableName")
    if not table:
        return [(action, "*")]
    arn = _table_arn(table, region, part)
    return [(action, f"{arn}/index/{p.get('IndexName')}" if p.get("IndexName") else arn)]


def asg_arn(name: str, region: str, part: str, account: str = "") -> str:
    """An ASG's ARN with its id unknown: IAM policies match the id with ``*``."""
    return f"arn:{part}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{name}"


def _autoscaling(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
    names = p.get("AutoScalingGroupNames") or ([p.get("AutoScalingGroupName")] if p.get("AutoScalingGroupName")
                                               else [])
    if names and not action.startswith("autoscaling:Describe"):
        return [(action, asg_arn(n, region, part)) for n in names]
    if p.get("InstanceId") and not action.startswith("autoscaling:Describe"):
        # The call names only the instance; the audit resolves the ASG it belongs to.
        return [(action, f"arn:{part}:ec2:{region}::instance/{p.get('InstanceId')}")]
    return [(action, "*")]   # Describe calls support no resource-level permissions


def _logs(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
    group, stream = p.get("logGroupName"), p.get("logStreamName")
    if not group:
        return [(action, "*")]
    base = f"arn:{part}:logs:{region}::log-group:{group}"
    # A log group's own ARN ends in ":*" (DescribeLogGroups shows it so, and policies grant it so).
    return [(action, f"{base}:log-stream:{stream}" if stream else f"{base}:*")]


def _kms(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
    key = p.get("KeyId")
    if not key:
        return [(action, "*")]
    if key.startswith("arn:"):
        return [(action, key)]
    return [(action, f"arn:{part}:kms:{region}::{key if key.startswith('alias/') else 'key/' + key}")]


def _cloudwatch(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
    names = p.get("AlarmNames")
    if names:
        return [(action, f"arn:{part}:cloudwatch:{region}::alarm:{n}") for n in names]
    return [(action, "*")]  # metric calls have no resource type


def _arn_params(*names: str) -> Rule:
    """Services whose parameters are ARNs already (ELB, SNS, IAM by ARN)."""
    def rule(action: str, p: _Params, region: str, part: str) -> list[tuple[str, str]]:
        arns: list[str] = []
        for name in names:
            value = p.get(name)
            arns.extend(value if isinstance(value, list) else [value] if value else [])
        if not arns or action.split(":")[1].startswith("Describe"):
            return [(action, "*")]
        return [(action, a) for a in arns]
    return rule


RULES: dict[str, Rule] = {
    "s3": _s3, "sqs": _sqs, "dynamodb": _dynamodb, "autoscaling": _autoscaling, "logs": _logs, "kms": _kms,
    "cloudwatch": _cloudwatch,
    "elbv2": _arn_params("ListenerArn", "TargetGroupArn", "TargetGroupArns", "LoadBalancerArn", "LoadBalancerArns",
                         "RuleArn", "RuleArns", "ResourceArns"),
    "sns": _arn_params("TopicArn"), "sts": _arn_params("RoleArn"),
}


def iam_action(service: str, operation: str) -> str:
    prefix = IAM_PREFIX.get(service, service)
    if service == "s3":
        return f"s3:{S3_ACTIONS.get(operation, operation)}"
    return f"{prefix}:{BATCH_ACTIONS.get(operation, operation)}"


def targets(service: str, operation: str, params: Mapping[str, Any], region: str) -> list[tuple[str, str]]:
    """Each (IAM action, resource ARN) a call needs; ``*`` where the action has no resource type."""
    rule = RULES.get(service)
    action = iam_action(service, operation)
    return rule(action, _Params(params), region, partition(region)) if rule else [(action, "*")]


def context_keys(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Condition keys the call carries that gpufleet's policies test."""
    p = _Params(params)
    if service == "cloudwatch" and p.get("Namespace"):
        return {"cloudwatch:namespace": p.get("Namespace")}
    if service == "s3" and operation in OBJECT_CREATION:
        keys = {"s3:ObjectCreationOperation": str(OBJECT_CREATION[operation]).lower()}
        for header, key in (("IfNoneMatch", "s3:if-none-match"), ("IfMatch", "s3:if-match")):
            if p.get(header) is not None:
                keys[key] = str(p.get(header))
        return keys
    return {}


class CallRecorder:
    """Appends the calls of every client it is attached to, buffered, to ``<dir>/<role>-<pid>.jsonl``."""

    def __init__(self, directory: Path, caller: Caller) -> None:
        self.caller = caller
        self.path = directory / f"{caller.role}-{os.getpid()}.jsonl"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        directory.mkdir(parents=True, exist_ok=True)
        atexit.register(self.flush)

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("provide-client-params.*.*", self._before)
        events.register("after-call.*.*", self._after)
        # A call that ends in an exception (connection lost, an answer that does not parse) was still made.
        events.register("after-call-error.*.*", self._failed)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        region = context.get("client_region") or ""
        try:
            needs = targets(service, model.name, params, region)
        except (KeyError, TypeError, AttributeError, IndexError):
            # A recorder must never fail the call it records; "?" matches no grant, so the audit shows it.
            needs = [(iam_action(service, model.name), "?")]
        context["gpufleet_call"] = Call(self.caller.role, self.caller.team, service, model.name, region,
                                        targets=needs, context=context_keys(service, model.name, params))

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        call: Call | None = context.pop("gpufleet_call", None)
        if call is None:
            return
        call.status = getattr(http_response, "status_code", None)
        call.kms_key = parsed.get("SSEKMSKeyId") if isinstance(parsed, dict) else None
        self.write(call)

    def _failed(self, context: dict[str, Any], **_: Any) -> None:
        call: Call | None = context.pop("gpufleet_call", None)
        if call is not None:
            self.write(call)

    def write(self, call: Call) -> None:
        with self._lock:
            self._lines.append(json.dumps(asdict(call)))
            if len(self._lines) >= FLUSH_EVERY:
                self._flush_locked()
            elif self._timer is None:
                self._timer = threading.Timer(FLUSH_AFTER_S, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            with self.path.open("a") as out:
                out.write("\n".join(self._lines) + "\n")
            self._lines.clear()


_recorders: dict[tuple[str, Caller], CallRecorder] = {}
_recorders_lock = threading.Lock()


def recorder(caller: Caller | None = None) -> CallRecorder | None:
    """This process's recorder for ``caller`` (default: from the environment), or None when not recording."""
    directory = os.environ.get(RECORD_ENV)
    if not directory:
        return None
    caller = caller or Caller(os.environ.get(ROLE_ENV) or "unknown", os.environ.get(TEAM_ENV) or None)
    with _recorders_lock:
        if (directory, caller) not in _recorders:
            _recorders[directory, caller] = CallRecorder(Path(directory), caller)
        return _recorders[directory, caller]


def flush_all() -> None:
    """Write every buffered line now (a long-running process calls this before it is read)."""
    for rec in list(_recorders.values()):
        rec.flush()


def read_calls(directory: Path) -> Iterator[Call]:
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                yield Call.from_json(json.loads(line))


def recording_env(directory: Path, role: str, team: str | None = None) -> dict[str, str]:
    """The environment that makes a child process record its calls as ``role``."""
    return {RECORD_ENV: str(directory), ROLE_ENV: role, **({TEAM_ENV: team} if team else {})}
