"""ScopedRole: an IAM role under a permission boundary whose inline policy grows with each grant.

The boundary (``PermissionBoundary``) is built from the same grants, so it is the union of what the
scoped roles may do: a later hand-attached policy cannot reach beyond it.
"""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from gpufleet.constructs.policy import Condition, PolicyDocument, Statement
from gpufleet.constructs.suppress import skip_checks
from gpufleet.providers import IamInstanceProfile, IamPolicy, IamRole, IamRolePolicy


class PermissionBoundary(Construct):
    """A managed policy used as the permissions boundary of several roles.

    Grants are merged by resource set (actions unioned) to stay within the 6,144-character limit.
    """

    def __init__(self, scope: Construct, boundary_id: str, *, name: str, description: str) -> None:
        super().__init__(scope, boundary_id)
        self._merged: dict[tuple[tuple[str, ...], tuple[Condition, ...]], set[str]] = {}
        self._doc = PolicyDocument(self, "doc")
        self.policy = IamPolicy(self, "policy", name=name, description=description, policy=self._doc.json)
        self.arn: str = self.policy.arn

    def allow(self, statement: Statement) -> None:
        key = (statement.resources, statement.conditions)
        self._merged.setdefault(key, set()).update(statement.actions)
        self._doc.statements.clear()
        for i, ((resources, conditions), actions) in enumerate(self._merged.items()):
            self._doc.add(Statement(f"Boundary{i}", tuple(sorted(actions)), resources, conditions=conditions))


class ScopedRole(Construct):
    """A role assumable by ``service`` or by ``principals`` (AWS ARNs), under ``boundary``.

    ``instance_profile`` also creates an instance profile of the same name. ``mfa`` requires MFA of
    assuming principals (for human operators).
    """

    def __init__(self, scope: Construct, role_id: str, *, name: str, boundary: PermissionBoundary,
                 service: str | None = None, principals: Sequence[str] = (), mfa: bool = False,
                 instance_profile: bool = False, description: str = "") -> None:
        super().__init__(scope, role_id)
        if bool(service) == bool(principals):
            raise ValueError(f"role {name}: give exactly one of service or principals")
        trust = Statement(
            "Trust", ("sts:AssumeRole",), (), principals={"Service": (service,)} if service
            else {"AWS": tuple(principals)},
            conditions=(Condition("Bool", "aws:MultiFactorAuthPresent", ("true",)),) if mfa else ())
        trust_doc = PolicyDocument(self, "trust", [trust])
        self.role = IamRole(self, "role", name=name, description=description,
                            assume_role_policy=trust_doc.json, permissions_boundary=boundary.arn,
                            max_session_duration=3600)
        self.name, self.arn = name, self.role.arn
        self.boundary = boundary
        self.policy = PolicyDocument(self, "policy")
        self._inline: IamRolePolicy | None = None
        self.profile_name: str | None = None
        if instance_profile:
            IamInstanceProfile(self, "profile", name=name, role=self.role.name)
            self.profile_name = name

    def skip_checks(self, reasons: dict[str, str]) -> None:
        skip_checks(self.role, reasons)

    def add_to_policy(self, statement: Statement) -> None:
        self.policy.add(statement)
        self.boundary.allow(statement)
        if self._inline is None:
            self._inline = IamRolePolicy(self, "inline", name="least-privilege", role=self.role.id,
                                         policy=self.policy.json)
