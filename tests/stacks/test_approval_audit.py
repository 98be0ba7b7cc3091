"""Who may forge an approval, judged by the evaluator ``gpufleet audit`` uses (moto's IAM statement
evaluation, identity policies and the permission boundary) on the real-AWS synth of examples/gpufleet.yaml.

The stack tests read grants off the JSON; these ask the evaluator the question an attacker would: may this
role write the approvals table, or the key of an approved artifact? A positive control per table keeps
the denials from being vacuous (an ARN the policies never match would deny everything).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.audit.evaluate import Request, denial_reason
from gpufleet.audit.stacks import Role, load_stacks
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
    # Training hosts add artifacts under models/, so IAM alone cannot tell a new key from an approved one:
    # every put carries If-None-Match: * (an existing key answers 412) and serving loads only the sha256
    # the approval pinned (tests/training/test_registry.py, tests/serving/test_approval_pinning.py).
    assert _may(team_roles["training"], "s3:PutObject", APPROVED_ARTIFACT)
