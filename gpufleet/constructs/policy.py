"""IAM policy documents built statement by statement, and the ``Grantee`` protocol grants write to.

Documents are ``aws_iam_policy_document`` data sources: structured in ``cdk.tf.json`` (so tests and
checkov read each statement) and rendered by Terraform without an API call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from constructs import Construct

from gpufleet.constructs.suppress import skip_checks
from gpufleet.providers import DataAwsIamPolicyDocument


@dataclass(frozen=True)
class Condition:
    test: str
    variable: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    """One IAM statement. ``principals`` maps a principal type (``AWS``, ``Service``) to identifiers."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    effect: str = "Allow"
    principals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if self.effect not in ("Allow", "Deny"):
            raise ValueError(f"statement {self.sid}: effect must be Allow or Deny, not {self.effect!r}")
        # A wildcard widens an Allow past least privilege but closes gaps in a Deny (an action a list
        # forgot stays denied), so only Allows must name their actions.
        if self.effect == "Allow" and any(a == "*" or a.endswith(":*") for a in self.actions):
            raise ValueError(f"statement {self.sid}: wildcard actions are not allowed in an Allow ({self.actions})")

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sid": self.sid, "effect": self.effect, "actions": sorted(self.actions)}
        if self.resources:  # trust policies name no resources
            out["resources"] = list(self.resources)
        if self.principals:
            out["principals"] = [{"type": t, "identifiers": list(ids)} for t, ids in self.principals.items()]
        if self.conditions:
            out["condition"] = [{"test": c.test, "variable": c.variable, "values": list(c.values)}
                                for c in self.conditions]
        return out


class Grantee(Protocol):
    """Anything that can receive identity-policy statements (a role)."""

    def add_to_policy(self, statement: Statement) -> None: ...


class PolicyDocument(Construct):
    """A policy document that grows as statements are added; ``json`` is its rendered text."""

    def __init__(self, scope: Construct, doc_id: str, statements: Sequence[Statement] = ()) -> None:
        super().__init__(scope, doc_id)
        self.statements: list[Statement] = []
        self._rendered = True
        self._doc = DataAwsIamPolicyDocument(self, "doc", statement=[])
        for statement in statements:
            self.add(statement)

    def add(self, statement: Statement) -> None:
        same = next((s for s in self.statements if s.sid == statement.sid), None)
        if same == statement:
            return  # granting the same thing twice is harmless
        if same is not None:
            raise ValueError(f"statement id {statement.sid!r} is used twice in {self.node.path}")
        self.statements.append(statement)
        self._rendered = False

    def render(self) -> None:
        """Write the statements into the data source (once per change: each jsii call costs time)."""
        if not self._rendered:
            self._doc.put_statement([s.render() for s in self.statements])
            self._rendered = True

    def skip_checks(self, reasons: dict[str, str]) -> None:
        skip_checks(self._doc, reasons)

    @property
    def json(self) -> str:
        return self._doc.json

    @property
    def empty(self) -> bool:
        return not self.statements


def sid(*parts: str) -> str:
    """A statement id from readable parts (IAM allows only alphanumerics)."""
    return "".join(p.replace("-", " ").replace("_", " ").title().replace(" ", "") for p in parts)


def render_policies(scope: Construct) -> None:
    """Render every policy document under ``scope``; stacks call this once all grants are made."""
    for node in scope.node.find_all():
        if isinstance(node, PolicyDocument):
            node.render()
