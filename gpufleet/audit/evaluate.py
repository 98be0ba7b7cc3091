"""``gpufleet audit``: each recorded call judged against the synthesized policies and network.

**Actions and resources are matched by moto's** ``moto.iam.access_control.IAMPolicyStatement`` (the code
moto's server runs when IAM enforcement is on), used in-process, statement by statement:

- A request (action, resource) is allowed when an Allow statement of the role's identity policies matches
  it, no Deny does, **and** the permission boundary allows it too (a boundary only narrows).
- Conditions are judged against the condition keys the call carries (the record keeps
  ``cloudwatch:namespace``, and for S3 writes ``s3:if-none-match`` and ``s3:ObjectCreationOperation``) as
  IAM judges them (``gpufleet.audit.conditions``): a key the call lacks fails every operator but ``Null``
  and ``...IfExists``, and a statement whose condition fails neither allows nor denies.
- ``sts:GetCallerIdentity`` is counted, not judged: AWS answers it to any caller, even under a Deny.
- Calls AWS makes on the caller's behalf are judged too: SSE-KMS S3 reads need ``kms:Decrypt`` and writes
  ``kms:GenerateDataKey`` on the object's key (the one S3 reported, else the bucket's default); SQS
  sends and receives on a KMS-encrypted queue need the same on the queue's key.

Resource policies are judged too, with the two condition keys AWS sets from the connection and the caller
set alike: ``aws:PrincipalArn`` is the role's ARN, and ``aws:SecureTransport`` is true (every SDK gpufleet runs
reaches AWS over HTTPS).

- A KMS request on a key whose ARN the state gives (``key_denial``) must be allowed by the key's policy, to
  the role or to its account (which hands the decision to the IAM policies judged above); a Deny wins.
- An S3 request is denied when a Deny of the bucket's policy matches it (``bucket_denial``). The local synth
  has no bucket policies (``gpufleet.local.differences``), so judging them needs the real-AWS synth:
  ``gpufleet synth --target aws --out DIR`` in the deployed workspace, then ``gpufleet audit --stacks DIR``
  (the demo test does).

A call is *routable* when its caller runs outside the VPC (the operator) or the platform network of the
call's region has a NAT gateway or a VPC endpoint for the service. Stand-in callers (the local cloud, the
DR drill's replication and region loss) do what AWS itself does and are only counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from gpufleet.audit.conditions import conditions_hold
from gpufleet.audit.reviewed import REVIEWED_UNUSED
from gpufleet.audit.stacks import Role, Stacks
from gpufleet.callrecord import STAND_IN_ROLES, Call, asg_arn, partition

HOST_ROLES = ("training", "serving")   # run in the private subnets; the operator runs outside the VPC
KMS_FOR = {"s3:PutObject": ("kms:GenerateDataKey",), "s3:GetObject": ("kms:Decrypt",),
           "s3:GetObjectVersion": ("kms:Decrypt",), "sqs:SendMessage": ("kms:GenerateDataKey", "kms:Decrypt"),
           "sqs:ReceiveMessage": ("kms:Decrypt",)}
# Actions AWS answers whatever the policies say (STS API reference: GetCallerIdentity needs no permission,
# and an explicit Deny does not stop it): counted, never judged. The CLI asks it before a team command.
ANSWERED_TO_ANY_CALLER = frozenset({"sts:GetCallerIdentity"})
# The condition keys AWS sets from the connection for every call gpufleet makes (HTTPS only).
CONNECTION_KEYS = (("aws:SecureTransport", "true"),)
# An ARN whose account field the call left empty (S3 ARNs have none by design).
EMPTY_ACCOUNT = re.compile(r"^(arn:[^:]+:(?!s3:)[^:]+:[^:]*:)(:)")


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    via: str = ""      # the call's own action when AWS makes this request on the caller's behalf


@dataclass
class Denial:
    operation: str
    request: Request
    # "not granted" | "outside the permission boundary" | "explicitly denied" | "denied by the bucket policy (Sid)"
    # | "denied by the key policy (Sid)" | "not allowed by the key policy (...)"
    reason: str
    suggestion: dict[str, Any]    # the identity statement to add; for a resource policy, what it must admit

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "action": self.request.action, "resource": self.request.resource,
                "via": self.request.via or None, "reason": self.reason, "suggested_statement": self.suggestion}


@dataclass
class RoleReport:
    role: str
    kind: str
    team: str | None
    region: str
    calls: int = 0
    actions: set[str] = field(default_factory=set)
    kms_keys: set[str] = field(default_factory=set)      # keys AWS used on the role's behalf (S3, SQS)
    denied: list[Denial] = field(default_factory=list)
    unrouted: Counter[str] = field(default_factory=Counter)
    unused: dict[str, str | None] = field(default_factory=dict)   # granted, never used → reviewed reason or None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "kind": self.kind, "team": self.team, "region": self.region, "calls": self.calls,
                "actions": sorted(self.actions), "kms_keys": sorted(self.kms_keys),
                "denied": [d.to_json() for d in self.denied], "unrouted": dict(self.unrouted),
                "unused_grants": [{"action": a, "reviewed_reason": r} for a, r in sorted(self.unused.items())]}


@dataclass
class AuditReport:
    roles: list[RoleReport] = field(default_factory=list)
    stand_in_calls: int = 0
    unattributed: Counter[str] = field(default_factory=Counter)   # "<role>/<team>@<region>" with no synthesized role
    resolved_by_state: dict[str, bool] = field(default_factory=dict)
    # requests judged against a resource policy too: "bucket" (S3) and "key" (KMS)
    resource_policy_requests: Counter[str] = field(default_factory=Counter)

    @property
    def denied(self) -> int:
        return sum(len(r.denied) for r in self.roles) + sum(self.unattributed.values())

    @property
    def unrouted(self) -> int:
        return sum(sum(r.unrouted.values()) for r in self.roles)

    @property
    def ok(self) -> bool:
        return self.denied == 0 and self.unrouted == 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "denied": self.denied, "unrouted": self.unrouted, "stand_in_calls": self.stand_in_calls,
                "resource_policy_requests": {"bucket": self.resource_policy_requests["bucket"],
                                             "key": self.resource_policy_requests["key"]},
                "unattributed": dict(self.unattributed), "resolved_by_state": self.resolved_by_state,
                "roles": [r.to_json() for r in self.roles]}


def _statement_result(statement: Mapping[str, Any], request: Request) -> PermissionResult:
    """moto matches action and resource; the condition is judged here (moto would judge it first, so a
    conditioned Deny denied every request, and it passes a key the request lacks)."""
    matching = {k: v for k, v in statement.items() if k != "Condition"}
    result = IAMPolicyStatement(matching).is_action_permitted(request.action, request.resource)
    if result != PermissionResult.NEUTRAL and not conditions_hold(statement.get("Condition", {}),
                                                                  dict(request.context)):
        return PermissionResult.NEUTRAL   # a statement whose condition fails neither allows nor denies
    return result


def _judge(policies: Iterable[Mapping[str, Any]], request: Request) -> PermissionResult:
    """PERMITTED / DENIED / NEUTRAL over several documents: any Deny wins, else any Allow."""
    results = {_statement_result(st, request) for policy in policies for st in policy.get("Statement", [])}
    for verdict in (PermissionResult.DENIED, PermissionResult.PERMITTED):
        if verdict in results:
            return verdict
    return PermissionResult.NEUTRAL


def denial_reason(role: Role, request: Request) -> str | None:
    """None when ``role`` may make ``request``; else why not: "explicitly denied", "not granted" or
    "outside the permission boundary". The one judgement the audit makes of every recorded call, also
    asked directly of requests no call made (what a role must never be able to do)."""
    identity = _judge(role.policies, request)
    boundary = _judge([role.boundary], request) if role.boundary else PermissionResult.PERMITTED
    if identity == PermissionResult.PERMITTED and boundary == PermissionResult.PERMITTED:
        return None
    return ("explicitly denied" if PermissionResult.DENIED in (identity, boundary)
            else "not granted" if identity != PermissionResult.PERMITTED
            else "outside the permission boundary")


def bucket_denial(policy: Mapping[str, Any], request: Request, principal_arn: str) -> str | None:
    """Why the bucket's policy denies ``principal_arn`` the S3 request, or None. Only its Deny statements can
    (its Allow statements add access for other principals: a role's own account grants through IAM)."""
    for statement, verdict in _resource_verdicts(policy, request, principal_arn):
        if verdict == PermissionResult.DENIED:
            return f"denied by the bucket policy ({statement.get('Sid', 'a Deny statement')})"
    return None


def key_denial(policy: Mapping[str, Any], request: Request, principal_arn: str) -> str | None:
    """Why the key's policy keeps ``principal_arn`` from the KMS request, or None. A key policy must allow the
    action to the role or to its account, which hands the decision to IAM (judged apart); a Deny wins."""
    verdicts = list(_resource_verdicts(policy, request, principal_arn))
    for statement, verdict in verdicts:
        if verdict == PermissionResult.DENIED:
            return f"denied by the key policy ({statement.get('Sid', 'a Deny statement')})"
    allowed = any(verdict == PermissionResult.PERMITTED for _, verdict in verdicts)
    return None if allowed else "not allowed by the key policy (neither to the role nor to its account)"


def _resource_verdicts(policy: Mapping[str, Any], request: Request,
                       principal_arn: str) -> Iterable[tuple[Mapping[str, Any], PermissionResult]]:
    """Each statement naming the principal, with its verdict on the request as that principal makes it."""
    as_made = Request(request.action, request.resource,   # a key the call itself carries wins
                      (*CONNECTION_KEYS, ("aws:PrincipalArn", principal_arn), *request.context))
    for statement in policy.get("Statement", []):
        if _names_principal(statement.get("Principal", {}), principal_arn):
            yield statement, _statement_result(statement, as_made)


def _names_principal(principal: Mapping[str, Any], arn: str) -> bool:
    """Whether a resource policy's ``Principal`` covers the role ``arn``: ``*``, the role, or its account."""
    account = arn.split(":")[4]
    names = principal.get("AWS", [])
    return any(n in ("*", arn, account) or n.endswith(f":iam::{account}:root")
               for n in ([names] if isinstance(names, str) else names))


def bucket_of(resource: str) -> str:
    """The bucket an S3 ARN (``arn:aws:s3:::bucket/key``) names."""
    return resource.split(":::", 1)[-1].split("/", 1)[0]


def suggestion(request: Request) -> dict[str, Any]:
    return {"Sid": "Allow" + re.sub(r"[^A-Za-z0-9]", "", request.action.split(":")[1]), "Effect": "Allow",
            "Action": request.action, "Resource": request.resource}


class Auditor:
    def __init__(self, stacks: Stacks, instance_asgs: Mapping[str, str] | None = None) -> None:
        self.stacks = stacks
        self.instance_asgs = dict(instance_asgs or {})
        self.account = next(iter(sorted(stacks.accounts)), "")
        self.reports: dict[str, RoleReport] = {}
        self.used: dict[str, set[str]] = {}
        self.unattributed: Counter[str] = Counter()
        self.resource_policy_requests: Counter[str] = Counter()

    def role_for(self, call: Call) -> Role | None:
        named = [r for r in self.stacks.roles if r.name == call.role]   # CloudTrail names the role itself
        if named:
            return named[0]
        candidates = [r for r in self.stacks.roles if r.kind == call.role and r.region == call.region]
        if call.team:
            candidates = [r for r in candidates if r.team == call.team]
        elif len(candidates) > 1:   # the CLI does not say its team: the one whose resources the call names
            owners = [r for r in candidates if any(f"-{r.team}-" in f"{arn}-" or f"/{r.team}" in arn
                                                   for _, arn in call.targets)]
            candidates = owners or candidates
        return candidates[0] if len(candidates) == 1 else None

    def requests(self, call: Call) -> list[Request]:
        context = tuple(sorted(call.context.items()))
        out: list[Request] = []
        for action, resource in call.targets:
            resource = self._complete(resource, call.region)
            out.append(Request(action, resource, context))
            out += [Request(kms, key, context, via=action) for kms in KMS_FOR.get(action, ())
                    if (key := self._key_for(action, resource, call))]
        return out

    def _complete(self, arn: str, region: str) -> str:
        """Fill the account the call did not name; name the ASG of an instance-only Auto Scaling call."""
        if ":ec2:" in arn and "/i-" in arn and (asg := self.instance_asgs.get(arn.rsplit("/", 1)[1])):
            arn = asg_arn(asg, region, partition(region))
        return EMPTY_ACCOUNT.sub(lambda m: f"{m.group(1)}{self.account}:", arn) if self.account else arn

    def _key_for(self, action: str, resource: str, call: Call) -> str | None:
        if action.startswith("s3:"):
            key = call.kms_key or self.stacks.bucket_keys.get(bucket_of(resource))
        else:
            key = self.stacks.queue_keys.get(resource)
        if key and not key.startswith("arn:"):   # S3 may report a bare key id
            key = f"arn:{partition(call.region)}:kms:{call.region}:{self.account}:key/{key}"
        return key

    def add(self, call: Call) -> None:
        role = self.role_for(call)
        if role is None:
            self.unattributed[f"{call.role}/{call.team or '-'}@{call.region}"] += 1
            return
        report = self.reports.setdefault(role.name, RoleReport(role.name, role.kind, role.team, role.region))
        used = self.used.setdefault(role.name, set())
        report.calls += 1
        for request in self.requests(call):
            report.actions.add(request.action)
            if request.via:
                report.kms_keys.add(request.resource)
            if request.action in ANSWERED_TO_ANY_CALLER:
                continue
            reason = denial_reason(role, request)
            if reason is None and (denial := self._resource_policy_denial(role, request, call.operation)) is not None:
                report.denied.append(denial)
            elif reason is None:
                used.add(request.action)
            else:
                report.denied.append(Denial(call.operation, request, reason, suggestion(request)))
        if role.kind in HOST_ROLES:
            network = self.stacks.networks.get(call.region)
            if network is None or not network.routes(call.service):
                report.unrouted[call.service] += 1

    def _resource_policy_denial(self, role: Role, request: Request, operation: str) -> Denial | None:
        """A bucket's policy on an S3 request, a key's on a KMS request (the keys of ARNs the state resolved)."""
        arn = f"arn:{partition(role.region)}:iam::{self.account or '*'}:role/{role.name}"
        if request.action.startswith("s3:"):
            bucket = bucket_of(request.resource)
            kind, policy, judge = "bucket", self.stacks.bucket_policies.get(bucket), bucket_denial
            fix = {"BucketPolicy": bucket, "ExemptPrincipal": arn}
        elif request.action.startswith("kms:"):
            kind, policy, judge = "key", self.stacks.key_policies.get(request.resource), key_denial
            fix = {"KeyPolicy": request.resource, "AllowAction": request.action, "ToPrincipal": arn}
        else:
            return None
        if policy is None:
            return None
        self.resource_policy_requests[kind] += 1
        reason = judge(policy, request, arn)
        return None if reason is None else Denial(operation, request, reason, fix)

    def report(self, calls: Iterable[Call]) -> AuditReport:
        stand_in = 0
        for call in calls:
            if call.role in STAND_IN_ROLES:
                stand_in += 1
            else:
                self.add(call)
        for role in self.stacks.roles:
            if role.name not in self.reports:
                continue
            granted = {a for p in role.policies for s in p.get("Statement", []) if s.get("Effect") == "Allow"
                       for a in ([s["Action"]] if isinstance(s.get("Action"), str) else s.get("Action", []))}
            reviewed = REVIEWED_UNUSED.get(role.kind, {})
            self.reports[role.name].unused = {a: reviewed.get(a) for a in sorted(granted - self.used[role.name])}
        return AuditReport(sorted(self.reports.values(), key=lambda r: (r.region, r.role)), stand_in,
                           self.unattributed, dict(self.stacks.resolved_by_state), self.resource_policy_requests)


def audit(stacks: Stacks, calls: Iterable[Call], instance_asgs: Mapping[str, str] | None = None) -> AuditReport:
    return Auditor(stacks, instance_asgs).report(calls)
