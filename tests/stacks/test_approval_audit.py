"""Who may forge an approval, judged by the evaluator ``gpufleet audit`` uses (moto's IAM statement
evaluation, identity policies and the permission boundary) on the real-AWS synth of examples/gpufleet.yaml.

The stack tests read grants off the JSON; these ask the evaluator the question an attacker would: may this
role write the approvals table, or the key of an approved artifact (with and without If-None-Match)? A
positive control per table keeps the denials from being vacuous (an ARN the policies never match would deny
everything).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.audit.evaluate import Request, denial_reason
from gpufleet.audit.stacks import Role, load_stacks
from gpufleet.callrecord import context_keys
from tests.stacks.conftest import Synth

ACCOUNT = "123456789012"
TEAM = "vision"
APPROVAL_WRITES = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
# The key an approval pins (artifacts bucket, models/<model>/<version>/model.tar.gz).
APPROVED_ARTIFACT = "arn:aws:s3:::acme-vision-artifacts/models/digits/3/model.tar.gz"
ARTIFACT_REMOVALS = ("s3:DeleteObject", "s3:DeleteObjectVersion")


@pytest.fixture(scope="module")
def team_roles(aws_synth: tuple[Path, Synth]) -> dict[str, Role]:
    stacks = load_stacks([aws_synth[0].parent])
    roles = {r.kind: r for r in stacks.roles if r.team == TEAM}
    assert {"training", "serving", "job", "operator"} <= set(roles), sorted(roles)
    return roles


def _table(role: Role, name: str) -> str:
    return f"arn:aws:dynamodb:{role.region}:{ACCOUNT}:table/acme-{TEAM}-{name}"


def _may(role: Role, action: str, resource: str) -> bool:
    return denial_reason(role, Request(action, resource)) is None


@pytest.mark.parametrize("kind", ["training", "serving", "job"])
def test_host_and_job_roles_are_denied_every_approval_write(team_roles: dict[str, Role], kind: str) -> None:
    role = team_roles[kind]
    approvals = _table(role, "approvals")
    verdicts = {a: denial_reason(role, Request(a, approvals)) for a in APPROVAL_WRITES}
    assert all(reason is not None for reason in verdicts.values()), verdicts
    # No role holds a grant the boundary would cut: the identity policy itself has none.
    assert set(verdicts.values()) == {"not granted"}


def test_the_operator_role_writes_approvals_and_no_role_deletes_one(team_roles: dict[str, Role]) -> None:
    operator = team_roles["operator"]
    approvals = _table(operator, "approvals")
    assert _may(operator, "dynamodb:PutItem", approvals) and _may(operator, "dynamodb:UpdateItem", approvals)
    # Approving and rejecting are writes of a record; the approval history is never deleted, by anyone.
    for role in team_roles.values():
        assert not _may(role, "dynamodb:DeleteItem", approvals), role.kind
        assert not _may(role, "dynamodb:BatchWriteItem", approvals), role.kind
    # Positive control: the serving hosts do read the approval of the version they serve.
    assert _may(team_roles["serving"], "dynamodb:GetItem", _table(team_roles["serving"], "approvals"))


def test_job_code_can_neither_register_nor_approve_a_version_in_the_models_table(
        team_roles: dict[str, Role]) -> None:
    job, training = team_roles["job"], team_roles["training"]
    models = _table(job, "models")
    assert not any(_may(job, a, models) for a in (*APPROVAL_WRITES, "dynamodb:GetItem"))
    assert _may(training, "dynamodb:PutItem", models)   # control: the agent registers versions


def test_no_host_or_job_role_removes_an_approved_artifact_and_only_training_hosts_add_one(
        team_roles: dict[str, Role]) -> None:
    for kind in ("training", "serving", "job"):
        assert not any(_may(team_roles[kind], a, APPROVED_ARTIFACT) for a in ARTIFACT_REMOVALS), kind
    assert not _may(team_roles["serving"], "s3:PutObject", APPROVED_ARTIFACT)
    assert not _may(team_roles["job"], "s3:PutObject", APPROVED_ARTIFACT)
    assert not _may(team_roles["job"], "s3:GetObject", APPROVED_ARTIFACT)
    assert _may(team_roles["serving"], "s3:GetObject", APPROVED_ARTIFACT)   # control
    # Training hosts add artifacts under models/ and IAM itself keeps them from replacing one: the put
    # that creates the object must carry If-None-Match: * (an existing key then answers 412; tests/training/
    # test_registry.py), and serving loads only the sha256 the approval pinned (test_approval_pinning.py).


def _write(role: Role, operation: str, **params: str) -> str | None:
    """Why ``role`` may not make this S3 write on the approved artifact's key, with the condition keys
    the call record gives it (None when it may)."""
    context = tuple(sorted(context_keys("s3", operation, params).items()))
    return denial_reason(role, Request("s3:PutObject", APPROVED_ARTIFACT, context))


@pytest.mark.parametrize("kind", ["training", "operator"])
def test_artifact_writers_write_an_artifact_key_only_with_if_none_match(team_roles: dict[str, Role],
                                                                       kind: str) -> None:
    """Training hosts add what jobs produced; operators add models brought in (`gpufleet model register`)."""
    writer = team_roles[kind]
    # An unconditional put, completion or copy would replace the approved artifact: IAM refuses it.
    assert _write(writer, "PutObject") == "not granted"
    assert _write(writer, "CompleteMultipartUpload", UploadId="u") == "not granted"
    assert _write(writer, "CopyObject", CopySource="acme-vision-artifacts/models/digits/4/model.tar.gz") \
        == "not granted"
    assert _write(writer, "PutObject", IfMatch='"etag"') == "not granted"   # a conditional overwrite
    # Controls: the conditional put and the multipart path the agent takes for large artifacts.
    assert _write(writer, "PutObject", IfNoneMatch="*") is None
    assert _write(writer, "CreateMultipartUpload") is None and _write(writer, "UploadPart") is None
    assert _write(writer, "CompleteMultipartUpload", UploadId="u", IfNoneMatch="*") is None
    assert _may(writer, "s3:AbortMultipartUpload", APPROVED_ARTIFACT)
    # Other prefixes are unchanged: checkpoints are rewritten as training goes; the operator rewrites job
    # code and the registry export.
    rewritten = ["arn:aws:s3:::acme-vision-checkpoints/job-1/step-10.pt"]
    if kind == "operator":
        rewritten += [f"arn:aws:s3:::acme-vision-artifacts/{key}"
                      for key in ("code/job-1/source.tar.gz", "registry-export/models.jsonl")]
    plain_put = tuple(context_keys("s3", "PutObject", {}).items())
    assert {arn: denial_reason(writer, Request("s3:PutObject", arn, plain_put)) for arn in rewritten} == \
        dict.fromkeys(rewritten)
    # Serving and job code hold no write there, conditional or not.
    for other in ("serving", "job"):
        assert _write(team_roles[other], "PutObject", IfNoneMatch="*") is not None, other
