"""The audit's evaluator on small hand-written ``cdk.tf.json`` documents in the shape cdktf synthesizes.

No AWS and no Terraform: the evaluator only reads synthesized JSON (and state, when given), and judges with
moto's IAM policy evaluation in-process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpufleet.audit.cloudtrail import read_cloudtrail
from gpufleet.audit.evaluate import Request, audit, key_denial
from gpufleet.audit.stacks import load_stacks
from gpufleet.callrecord import Call, context_keys, targets

REGION, ACCOUNT = "us-east-1", "123456789012"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/p-t-jobs"


def _statement(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"sid": sid, "effect": "Allow", "actions": actions, "resources": resources, **extra}


def _team_stack(role_statements: list[dict[str, Any]], boundary_statements: list[dict[str, Any]]) -> dict[str, Any]:
    docs = {"role_doc": {"statement": role_statements}, "boundary_doc": {"statement": boundary_statements}}
    return {
        "provider": {"aws": [{"region": REGION, "default_tags": [{"tags": {"gpufleet:team": "t"}}]}]},
        "data": {"aws_iam_policy_document": docs},
        "resource": {
            "aws_iam_policy": {"boundary": {"name": "p-t-boundary",
                                            "policy": "${data.aws_iam_policy_document.boundary_doc.json}"}},
            "aws_iam_role": {"training-role_1": {
                "//": {"metadata": {"path": "team-t/training-role/role"}}, "name": "p-t-training",
                "permissions_boundary": "${aws_iam_policy.boundary.arn}"}},
            "aws_iam_role_policy": {"inline": {"role": "${aws_iam_role.training-role_1.id}",
                                               "policy": "${data.aws_iam_policy_document.role_doc.json}"}},
            "aws_sqs_queue": {"jobs": {"name": "p-t-jobs"}},
            "aws_s3_bucket": {"data": {"bucket": "p-t-data"}},
        },
    }


def _platform_stack(endpoints: list[str], nat: bool = False) -> dict[str, Any]:
    resources: dict[str, Any] = {"aws_vpc": {"vpc": {}}, "aws_vpc_endpoint": {
        s: {"service_name": f"com.amazonaws.{REGION}.{s}", "vpc_endpoint_type": "Gateway" if s == "s3" else "Interface",
            "private_dns_enabled": s != "s3"} for s in endpoints}}
    if nat:
        resources["aws_nat_gateway"] = {"nat": {}}
    return {"provider": {"aws": [{"region": REGION}]}, "resource": resources}


def _synth(tmp_path: Path, team: dict[str, Any], platform: dict[str, Any]) -> Path:
    for name, doc in (("team-t", team), ("platform", platform)):
        (tmp_path / "cdktf.out" / "stacks" / name).mkdir(parents=True)
        (tmp_path / "cdktf.out" / "stacks" / name / "cdk.tf.json").write_text(json.dumps(doc))
    return tmp_path / "cdktf.out"


def _call(service: str, operation: str, params: dict[str, Any]) -> Call:
    return Call("training", "t", service, operation, REGION, targets(service, operation, params, REGION))


CONSUME = _statement("ConsumeJobs", ["sqs:ReceiveMessage", "sqs:DeleteMessage"], ["${aws_sqs_queue.jobs.arn}"])
READ_DATA = _statement("ReadData", ["s3:GetObject"], ["${aws_s3_bucket.data.arn}/*"])


def test_a_granted_routable_call_is_allowed_and_unused_grants_are_listed(tmp_path: Path) -> None:
    synth = _synth(tmp_path, _team_stack([CONSUME], [CONSUME]), _platform_stack(["sqs"]))
    report = audit(load_stacks([synth]), [_call("sqs", "ReceiveMessage", {"QueueUrl": QUEUE_URL})])
    assert report.ok and report.denied == 0 and report.unrouted == 0
    (role,) = report.roles
    assert (role.role, role.calls, role.actions) == ("p-t-training", 1, {"sqs:ReceiveMessage"})
    assert list(role.unused) == ["sqs:DeleteMessage"]


def test_a_call_the_role_lacks_is_denied_with_the_statement_that_would_allow_it(tmp_path: Path) -> None:
    synth = _synth(tmp_path, _team_stack([CONSUME], [CONSUME]), _platform_stack(["sqs"]))
    report = audit(load_stacks([synth]), [_call("sqs", "SendMessage", {"QueueUrl": QUEUE_URL, "MessageBody": "{}"})])
    assert not report.ok and report.denied == 1
    (denial,) = report.roles[0].denied
    assert denial.reason == "not granted"
    # Without state the queue ARN comes from its synthesized name, with the account matched by "*".
    assert denial.suggestion == {"Sid": "AllowSendMessage", "Effect": "Allow", "Action": "sqs:SendMessage",
                                 "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:p-t-jobs"}


def test_a_permission_boundary_that_lacks_the_action_denies_it(tmp_path: Path) -> None:
    synth = _synth(tmp_path, _team_stack([CONSUME, READ_DATA], [CONSUME]), _platform_stack(["sqs", "s3"]))
    report = audit(load_stacks([synth]), [_call("s3", "GetObject", {"Bucket": "p-t-data", "Key": "x/y.csv"})])
    (denial,) = report.roles[0].denied
    assert (denial.request.action, denial.request.resource) == ("s3:GetObject", "arn:aws:s3:::p-t-data/x/y.csv")
    assert denial.reason == "outside the permission boundary"


def test_a_service_without_endpoint_or_nat_is_unrouted_for_hosts(tmp_path: Path) -> None:
    synth = _synth(tmp_path, _team_stack([CONSUME], [CONSUME]), _platform_stack(["s3"]))
    report = audit(load_stacks([synth]), [_call("sqs", "ReceiveMessage", {"QueueUrl": QUEUE_URL})])
    assert report.denied == 0 and report.unrouted == 1 and dict(report.roles[0].unrouted) == {"sqs": 1}
    with_nat = _synth(tmp_path / "nat", _team_stack([CONSUME], [CONSUME]), _platform_stack(["s3"], nat=True))
    assert audit(load_stacks([with_nat]), [_call("sqs", "ReceiveMessage", {"QueueUrl": QUEUE_URL})]).ok


def test_conditions_are_judged_for_string_equals(tmp_path: Path) -> None:
    metrics = _statement("PutMetrics", ["cloudwatch:PutMetricData"], ["*"], condition=[
        {"test": "StringEquals", "variable": "cloudwatch:namespace", "values": ["gpufleet"]}])
    synth = _synth(tmp_path, _team_stack([metrics], [metrics]), _platform_stack(["monitoring"]))
    ours = Call("training", "t", "cloudwatch", "PutMetricData", REGION, [("cloudwatch:PutMetricData", "*")],
                context={"cloudwatch:namespace": "gpufleet"})
    theirs = Call("training", "t", "cloudwatch", "PutMetricData", REGION, [("cloudwatch:PutMetricData", "*")],
                  context={"cloudwatch:namespace": "Other"})
    assert audit(load_stacks([synth]), [ours]).ok
    assert audit(load_stacks([synth]), [theirs]).denied == 1


MODELS = "${aws_s3_bucket.data.arn}/models/*"
CREATE_ONLY = [
    _statement("CreateOnly", ["s3:PutObject"], [MODELS],
               condition=[{"test": "Null", "variable": "s3:if-none-match", "values": ["false"]}]),
    _statement("MultipartParts", ["s3:PutObject"], [MODELS],
               condition=[{"test": "Bool", "variable": "s3:ObjectCreationOperation", "values": ["false"]}])]


def _put(operation: str, **params: Any) -> Call:
    call = _call("s3", operation, {"Bucket": "p-t-data", "Key": "models/m/1/model.tar.gz", **params})
    call.context = context_keys("s3", operation, params)
    return call


def test_a_create_only_grant_allows_conditional_puts_and_multipart_parts_and_denies_overwrites(
        tmp_path: Path) -> None:
    synth = _synth(tmp_path, _team_stack(CREATE_ONLY, CREATE_ONLY), _platform_stack(["s3"]))
    allowed = [_put("PutObject", IfNoneMatch="*"), _put("CreateMultipartUpload"), _put("UploadPart", PartNumber=1),
               _put("CompleteMultipartUpload", IfNoneMatch="*", UploadId="u")]
    assert audit(load_stacks([synth]), allowed).ok
    overwrites = [_put("PutObject"), _put("CompleteMultipartUpload", UploadId="u"),
                  _put("PutObject", IfMatch='"etag"'), _put("CopyObject", CopySource="p-t-data/other")]
    report = audit(load_stacks([synth]), overwrites)
    assert [(d.operation, d.request.action, d.reason) for d in report.roles[0].denied] == [
        ("PutObject", "s3:PutObject", "not granted"), ("CompleteMultipartUpload", "s3:PutObject", "not granted"),
        ("PutObject", "s3:PutObject", "not granted"), ("CopyObject", "s3:PutObject", "not granted"),
        ("CopyObject", "s3:GetObject", "not granted")]


def test_a_conditioned_deny_denies_only_the_requests_its_condition_holds_for(tmp_path: Path) -> None:
    """moto judges a statement's condition before its resource and passes absent keys, so its own answer
    for a conditioned Deny is DENIED for every request: the evaluator must not inherit that."""
    guard = {"sid": "DenyUnconditionalCreation", "effect": "Deny", "actions": ["s3:PutObject"], "resources": [MODELS],
             "condition": [{"test": "Null", "variable": "s3:if-none-match", "values": ["true"]},
                           {"test": "Bool", "variable": "s3:ObjectCreationOperation", "values": ["true"]}]}
    write = _statement("Write", ["s3:PutObject"], ["${aws_s3_bucket.data.arn}/*"])
    synth = _synth(tmp_path, _team_stack([write], [write, guard]), _platform_stack(["s3"]))
    stacks = load_stacks([synth])
    assert audit(stacks, [_put("PutObject", IfNoneMatch="*"), _put("UploadPart", PartNumber=1)]).ok
    other = _call("s3", "PutObject", {"Bucket": "p-t-data", "Key": "checkpoints/x"})
    other.context = context_keys("s3", "PutObject", {})
    assert audit(stacks, [other]).ok   # the guard's resource is models/ only
    (denial,) = audit(stacks, [_put("PutObject")]).roles[0].denied
    assert denial.reason == "explicitly denied"


def test_sse_kms_reads_need_decrypt_on_the_key_s3_reports(tmp_path: Path) -> None:
    synth = _synth(tmp_path, _team_stack([READ_DATA], [READ_DATA]), _platform_stack(["s3"]))
    call = _call("s3", "GetObject", {"Bucket": "p-t-data", "Key": "k"})
    call.kms_key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/replica"
    (denial,) = audit(load_stacks([synth]), [call]).roles[0].denied
    assert (denial.request.action, denial.request.resource, denial.request.via) == (
        "kms:Decrypt", call.kms_key, "s3:GetObject")


@pytest.mark.parametrize(("service", "operation", "params", "expected"), [
    ("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, [("s3:GetObject", "arn:aws:s3:::b/k")]),
    ("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "p/"}, [("s3:ListBucket", "arn:aws:s3:::b")]),
    ("sqs", "SendMessage", {"QueueUrl": QUEUE_URL}, [("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:p-t-jobs")]),
    ("dynamodb", "TransactWriteItems", {"TransactItems": [{"Update": {"TableName": "jobs"}},
                                                          {"ConditionCheck": {"TableName": "models"}}]},
     [("dynamodb:UpdateItem", f"arn:aws:dynamodb:{REGION}::table/jobs"),
      ("dynamodb:ConditionCheckItem", f"arn:aws:dynamodb:{REGION}::table/models")]),
    ("autoscaling", "SetInstanceHealth", {"InstanceId": "i-1", "HealthStatus": "Unhealthy"},
     [("autoscaling:SetInstanceHealth", f"arn:aws:ec2:{REGION}::instance/i-1")]),
    ("logs", "PutLogEvents", {"logGroupName": "g", "logStreamName": "s"},
     [("logs:PutLogEvents", f"arn:aws:logs:{REGION}::log-group:g:log-stream:s")]),
    ("elbv2", "DescribeTargetHealth", {"TargetGroupArn": "arn:tg"},
     [("elasticloadbalancing:DescribeTargetHealth", "*")]),
])
def test_request_parameters_become_actions_and_arns(service: str, operation: str, params: dict[str, Any],
                                                   expected: list[tuple[str, str]]) -> None:
    assert targets(service, operation, params, REGION) == expected


def test_cloudtrail_events_are_judged_as_the_role_they_assumed(tmp_path: Path) -> None:
    synth = _synth(tmp_path, _team_stack([CONSUME], [CONSUME]), _platform_stack(["sqs"]))
    trail = tmp_path / "trail.json"
    trail.write_text(json.dumps({"Records": [
        {"eventSource": "sqs.amazonaws.com", "eventName": "SendMessage", "awsRegion": REGION,
         "userIdentity": {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/p-t-training/i-0abc"},
         "requestParameters": {"queueUrl": QUEUE_URL}},
        {"eventSource": "sqs.amazonaws.com", "eventName": "ReceiveMessage", "awsRegion": REGION,
         "userIdentity": {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/p-t-training/i-0abc"},
         "requestParameters": {"queueUrl": QUEUE_URL}},
        {"eventSource": "sqs.amazonaws.com", "eventName": "SendMessage", "awsRegion": REGION,
         "userIdentity": {"type": "AWSService", "invokedBy": "s3.amazonaws.com"}}]}))
    report = audit(load_stacks([synth]), read_cloudtrail(trail))
    (role,) = report.roles
    assert role.calls == 2 and [d.request.action for d in role.denied] == ["sqs:SendMessage"]


def test_get_caller_identity_is_counted_but_never_denied_as_aws_answers_it_to_anyone(tmp_path: Path) -> None:
    """The CLI asks it before every team command on real AWS; no policy grants it, and none needs to."""
    synth = _synth(tmp_path, _team_stack([CONSUME], [CONSUME]), _platform_stack(["sqs", "sts"]))
    calls = [_call("sts", "GetCallerIdentity", {}), _call("sts", "GetSessionToken", {})]
    report = audit(load_stacks([synth]), calls)
    (role,) = report.roles
    assert role.calls == 2 and {"sts:GetCallerIdentity", "sts:GetSessionToken"} <= role.actions
    assert [d.request.action for d in role.denied] == ["sts:GetSessionToken"]   # any other STS call is judged


def _with_bucket_policy(team: dict[str, Any], exempt_roles: list[str]) -> dict[str, Any]:
    """The team stack with the data bucket's policy as the real-AWS team stack synthesizes it: plain HTTP
    denied to everyone, object access denied to any principal but the team's roles."""
    everyone = [{"type": "AWS", "identifiers": ["*"]}]
    team["data"]["aws_iam_policy_document"]["bucket_doc"] = {"statement": [
        {"sid": "DenyInsecureTransport", "effect": "Deny", "actions": ["s3:*"], "principals": everyone,
         "resources": ["${aws_s3_bucket.data.arn}", "${aws_s3_bucket.data.arn}/*"],
         "condition": [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}]},
        {"sid": "DenyObjectAccessOutsideTeam", "effect": "Deny", "actions": ["s3:GetObject", "s3:PutObject"],
         "principals": everyone, "resources": ["${aws_s3_bucket.data.arn}/*"],
         "condition": [{"test": "ArnNotLike", "variable": "aws:PrincipalArn",
                        "values": [f"arn:aws:iam::${{data.aws_caller_identity.account.account_id}}:role/{r}"
                                   for r in exempt_roles]}]}]}
    team["resource"]["aws_s3_bucket_policy"] = {"data": {
        "bucket": "${aws_s3_bucket.data.id}", "policy": "${data.aws_iam_policy_document.bucket_doc.json}"}}
    return team


def test_a_bucket_policy_deny_denies_what_the_role_policy_allows_unless_it_exempts_the_role(tmp_path: Path) -> None:
    grants = [READ_DATA, _statement("ListData", ["s3:ListBucket"], ["${aws_s3_bucket.data.arn}"])]
    read, listing = (_call("s3", "GetObject", {"Bucket": "p-t-data", "Key": "x/y.csv"}),
                     _call("s3", "ListObjectsV2", {"Bucket": "p-t-data"}))
    exempt = _synth(tmp_path / "exempt", _with_bucket_policy(_team_stack(grants, grants),
                                                            ["p-t-serving", "p-t-training"]), _platform_stack(["s3"]))
    report = audit(load_stacks([exempt]), [read, listing])
    assert report.ok, report.roles[0].denied   # and the HTTPS-only Deny never fires: the SDKs use HTTPS
    assert load_stacks([exempt]).bucket_policies["p-t-data"]["Statement"][1]["Principal"] == {"AWS": ["*"]}

    outside = _synth(tmp_path / "outside", _with_bucket_policy(_team_stack(grants, grants), ["p-t-serving"]),
                     _platform_stack(["s3"]))
    (denial,) = audit(load_stacks([outside]), [read, listing]).roles[0].denied   # the Deny names objects only
    assert (denial.request.action, denial.reason) == (
        "s3:GetObject", "denied by the bucket policy (DenyObjectAccessOutsideTeam)")
    assert denial.suggestion == {"BucketPolicy": "p-t-data", "ExemptPrincipal": "arn:aws:iam::*:role/p-t-training"}


def test_a_kms_request_needs_the_key_policy_to_allow_it_to_the_role_or_its_account(tmp_path: Path) -> None:
    """S3 asks the key on the caller's behalf; IAM grants both, but the key policy delegates only Decrypt."""
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd"
    use = _statement("UseKey", ["kms:Decrypt", "kms:GenerateDataKey"], ["${aws_kms_key.key.arn}"])
    write = _statement("WriteData", ["s3:PutObject"], ["${aws_s3_bucket.data.arn}/*"])
    team = _team_stack([READ_DATA, write, use], [READ_DATA, write, use])
    root = [{"type": "AWS", "identifiers": ["arn:aws:iam::${data.aws_caller_identity.account.account_id}:root"]}]
    team["data"]["aws_iam_policy_document"]["key_doc"] = {"statement": [
        {"sid": "AccountUses", "effect": "Allow", "actions": ["kms:Decrypt"], "resources": ["*"], "principals": root},
        {"sid": "NoDecryptForJobs", "effect": "Deny", "actions": ["kms:Decrypt"], "resources": ["*"],
         "principals": [{"type": "AWS", "identifiers": ["*"]}],
         "condition": [{"test": "ArnLike", "variable": "aws:PrincipalArn", "values": ["arn:aws:iam::*:role/*-job"]}]}]}
    team["resource"]["aws_kms_key"] = {"key": {"policy": "${data.aws_iam_policy_document.key_doc.json}"}}
    team["resource"]["aws_s3_bucket_server_side_encryption_configuration"] = {"sse": {
        "bucket": "${aws_s3_bucket.data.id}",
        "rule": [{"apply_server_side_encryption_by_default": {"kms_master_key_id": "${aws_kms_key.key.arn}"}}]}}
    synth = _synth(tmp_path, team, _platform_stack(["s3"]))
    state = tmp_path / "state"
    state.mkdir()
    (state / "team-t.tfstate").write_text(json.dumps({"resources": [
        {"mode": "managed", "type": "aws_kms_key", "name": "key", "instances": [{"attributes": {"arn": key_arn}}]},
        {"mode": "data", "type": "aws_caller_identity", "name": "account",
         "instances": [{"attributes": {"account_id": ACCOUNT}}]}]}))
    stacks = load_stacks([synth], state)
    assert list(stacks.key_policies) == [key_arn]

    report = audit(stacks, [_call("s3", "GetObject", {"Bucket": "p-t-data", "Key": "k"}),
                            _call("s3", "PutObject", {"Bucket": "p-t-data", "Key": "k"})])
    (denial,) = report.roles[0].denied
    assert (denial.request.action, denial.request.via, denial.reason) == (
        "kms:GenerateDataKey", "s3:PutObject", "not allowed by the key policy (neither to the role nor to its account)")
    assert denial.suggestion == {"KeyPolicy": key_arn, "AllowAction": "kms:GenerateDataKey",
                                 "ToPrincipal": f"arn:aws:iam::{ACCOUNT}:role/p-t-training"}
    assert report.resource_policy_requests == {"key": 2}   # the two KMS requests; this bucket has no policy
    job = f"arn:aws:iam::{ACCOUNT}:role/p-t-job"
    assert key_denial(stacks.key_policies[key_arn], Request("kms:Decrypt", key_arn), job) == \
        "denied by the key policy (NoDecryptForJobs)"
