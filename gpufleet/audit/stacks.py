"""What the audit reads from the synthesized stacks: each role's policies and boundary, and the network.

Policies in ``cdk.tf.json`` name resources by Terraform reference (``${aws_s3_bucket.x.arn}``,
``${data.aws_caller_identity.account.account_id}``, cross-stack outputs). They are resolved against the
**deployed state** when the stack's state can be read (a local backend's file, or ``--state DIR`` holding
``<stack>.tfstate`` files pulled with ``terraform state pull``): the ARNs are then exactly what IAM sees.
Without state, a reference is replaced by the ARN **of the resource it names**, built from that resource's
synthesized arguments (a bucket's, queue's or table's name), with the account left as ``*``; a reference
to something whose ARN holds an id AWS assigns (a KMS key) becomes that resource type's ARN with the id
``*`` (a load balancer's listener: any listener); any other reference becomes ``*``. The audit says which
way it resolved.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.callrecord import partition

REFERENCE = re.compile(r"\$\{([^{}]+)\}")
# boto service name → the VPC endpoint service that carries it (com.amazonaws.<region>.<name>)
ENDPOINT_SERVICE = {"cloudwatch": "monitoring", "elbv2": "elasticloadbalancing"}


@dataclass
class Role:
    name: str
    kind: str                 # training | serving | operator | replication ...
    team: str | None
    region: str
    stack: str
    policies: list[dict[str, Any]] = field(default_factory=list)   # identity policies (inline + attached)
    boundary: dict[str, Any] | None = None


@dataclass
class Network:
    region: str
    nat: bool
    endpoints: set[str] = field(default_factory=set)   # services with a VPC endpoint usable from the hosts

    def routes(self, service: str) -> bool:
        return self.nat or ENDPOINT_SERVICE.get(service, service) in self.endpoints


@dataclass
class Stacks:
    roles: list[Role] = field(default_factory=list)
    networks: dict[str, Network] = field(default_factory=dict)   # region → the platform network there
    bucket_keys: dict[str, str] = field(default_factory=dict)    # bucket name → its default KMS key ARN
    queue_keys: dict[str, str] = field(default_factory=dict)     # queue ARN → its KMS key ARN
    bucket_policies: dict[str, dict[str, Any]] = field(default_factory=dict)   # bucket name → its bucket policy
    key_policies: dict[str, dict[str, Any]] = field(default_factory=dict)      # key ARN (from state) → its policy
    accounts: set[str] = field(default_factory=set)
    resolved_by_state: dict[str, bool] = field(default_factory=dict)   # stack dir → state used


class Resolver:
    """Resolves Terraform references of one synthesized stack (see the module docstring)."""

    def __init__(self, doc: dict[str, Any], state: dict[str, Any] | None, region: str,
                 remote: dict[str, Any] | None) -> None:
        self.doc, self.state, self.region, self.remote = doc, state, region, remote or {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return REFERENCE.sub(lambda m: self._one(m.group(1)), value)
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def _one(self, expr: str) -> str:
        parts = expr.split(".")
        if parts[:2] == ["data", "terraform_remote_state"] and len(parts) >= 5:
            value = self.remote.get(parts[4])
            return str(value) if value is not None else "*"
        found = self._from_state(parts) if self.state else None
        return found if found is not None else self._from_config(parts)

    def _from_state(self, parts: list[str]) -> str | None:
        mode, rest = ("data", parts[1:]) if parts[0] == "data" else ("managed", parts)
        if len(rest) < 3:
            return None
        for res in (self.state or {}).get("resources", []):
            if res.get("mode") == mode and res.get("type") == rest[0] and res.get("name") == rest[1]:
                value: Any = (res.get("instances") or [{}])[0].get("attributes", {})
                for key in rest[2:]:
                    value = value.get(key) if isinstance(value, dict) else None
                return None if value is None else str(value)
        return None

    def _from_config(self, parts: list[str]) -> str:
        part = partition(self.region)
        if parts[:2] == ["data", "aws_partition"]:
            return part
        if parts[:2] == ["data", "aws_caller_identity"]:
            return "*"
        if parts[0] == "data" or len(parts) < 3:
            return "*"
        kind, name, attr = parts[0], parts[1], parts[2]
        args = self.doc.get("resource", {}).get(kind, {}).get(name, {})
        if attr != "arn":
            return str(self(args.get(attr) or args.get("name") or "*"))
        arn = {
            "aws_s3_bucket": lambda: f"arn:{part}:s3:::{self(args.get('bucket', '*'))}",
            "aws_sqs_queue": lambda: f"arn:{part}:sqs:{self.region}:*:{self(args.get('name', '*'))}",
            "aws_dynamodb_table": lambda: f"arn:{part}:dynamodb:{self.region}:*:table/{self(args.get('name', '*'))}",
            "aws_iam_role": lambda: f"arn:{part}:iam::*:role/{self(args.get('name', '*'))}",
            "aws_iam_policy": lambda: f"arn:{part}:iam::*:policy/{self(args.get('name', '*'))}",
            "aws_kms_key": lambda: f"arn:{part}:kms:{self.region}:*:key/*",
            "aws_lb": lambda: f"arn:{part}:elasticloadbalancing:{self.region}:*:loadbalancer/app/"
                              f"{self(args['name'])}/*",
            "aws_lb_target_group": lambda: f"arn:{part}:elasticloadbalancing:{self.region}:*:targetgroup/"
                                           f"{self(args['name'])}/*",
            "aws_lb_listener": lambda: f"arn:{part}:elasticloadbalancing:{self.region}:*:listener/app/*",
        }.get(kind)
        return arn() if arn else "*"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _state_for(doc: dict[str, Any], stack: str, state_dir: Path | None) -> dict[str, Any] | None:
    if state_dir is not None:
        found = _read_json(state_dir / f"{stack}.tfstate")
        if found:
            return found
    local = doc.get("terraform", {}).get("backend", {}).get("local", {}).get("path")
    return _read_json(Path(local)) if local else None


def _remote_outputs(doc: dict[str, Any], state_dir: Path | None) -> dict[str, Any]:
    """The platform stack's outputs a team stack reads through ``terraform_remote_state``."""
    outputs: dict[str, Any] = {}
    for remote in doc.get("data", {}).get("terraform_remote_state", {}).values():
        path = remote.get("config", {}).get("path") or remote.get("config", {}).get("key", "")
        state = (_read_json(Path(path)) if path else None) or (
            _read_json(state_dir / Path(path).name) if state_dir and path else None)
        outputs.update({k: v.get("value") for k, v in (state or {}).get("outputs", {}).items()})
    return outputs


def policy_json(data_doc: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
    """An ``aws_iam_policy_document`` data source as the IAM JSON that Terraform renders from it."""
    statements = []
    for st in data_doc.get("statement", []):
        out: dict[str, Any] = {"Effect": st.get("effect", "Allow"), "Action": resolve(st.get("actions", []))}
        if st.get("sid"):
            out["Sid"] = st["sid"]
        if st.get("resources"):
            out["Resource"] = resolve(st["resources"])
        for principal in st.get("principals", []):   # resource policies only (a bucket's, a key's)
            out.setdefault("Principal", {}).setdefault(principal["type"], []).extend(resolve(principal["identifiers"]))
        for cond in st.get("condition", []):
            out.setdefault("Condition", {}).setdefault(cond["test"], {})[cond["variable"]] = resolve(cond["values"])
        statements.append(out)
    return {"Version": "2012-10-17", "Statement": statements}


def _ref_target(value: Any) -> tuple[str, str] | None:
    """(type, name) of the resource a single ``${type.name.attr}`` reference names."""
    m = REFERENCE.fullmatch(value) if isinstance(value, str) else None
    if not m:
        return None
    parts = m.group(1).split(".")
    return (parts[1], parts[2]) if parts[0] == "data" and len(parts) > 2 else (parts[0], parts[1])


def _doc_of(doc: dict[str, Any], policy_ref: Any, resolve: Resolver) -> dict[str, Any] | None:
    target = _ref_target(policy_ref)
    if target and target[0] == "aws_iam_policy_document":
        data = doc.get("data", {}).get("aws_iam_policy_document", {}).get(target[1])
        return policy_json(data, resolve) if data else None
    if isinstance(policy_ref, str) and policy_ref.lstrip().startswith("{"):
        parsed: dict[str, Any] = json.loads(policy_ref)
        return parsed
    return None


def _roles(doc: dict[str, Any], stack: str, team: str | None, region: str, resolve: Resolver) -> list[Role]:
    resources = doc.get("resource", {})
    managed = {name: _doc_of(doc, p.get("policy"), resolve) for name, p in resources.get("aws_iam_policy", {}).items()}
    roles = []
    for rid, args in resources.get("aws_iam_role", {}).items():
        path = args.get("//", {}).get("metadata", {}).get("path", "")
        construct = path.split("/")[1] if path.count("/") >= 2 else rid
        role = Role(str(resolve(args.get("name", rid))), construct.removesuffix("-role"), team, region, stack)
        boundary = _ref_target(args.get("permissions_boundary"))
        if boundary and boundary[0] == "aws_iam_policy":
            role.boundary = managed.get(boundary[1])
        mine = {f"${{aws_iam_role.{rid}.{a}}}" for a in ("id", "name")}
        for inline in resources.get("aws_iam_role_policy", {}).values():
            if inline.get("role") in mine and (found := _doc_of(doc, inline.get("policy"), resolve)):
                role.policies.append(found)
        for attach in resources.get("aws_iam_role_policy_attachment", {}).values():
            target = _ref_target(attach.get("policy_arn"))
            if attach.get("role") in mine and target and (found := managed.get(target[1])):
                role.policies.append(found)
        roles.append(role)
    return roles


def _network(doc: dict[str, Any], region: str, resolve: Resolver) -> Network | None:
    resources = doc.get("resource", {})
    if "aws_vpc" not in resources:
        return None
    net = Network(region, nat=bool(resources.get("aws_nat_gateway")))
    for ep in resources.get("aws_vpc_endpoint", {}).values():
        interface = ep.get("vpc_endpoint_type", "Gateway") == "Interface"
        # Without private DNS the SDK's default hostnames do not reach an interface endpoint.
        if interface and not ep.get("private_dns_enabled"):
            continue
        net.endpoints.add(str(resolve(ep.get("service_name", ""))).rsplit(".", 1)[-1])
    return net


def _buckets(doc: dict[str, Any], resolve: Resolver) -> dict[str, str]:
    """Bucket name by the reference other resources name it with (``${aws_s3_bucket.x.id}``)."""
    return {f"${{aws_s3_bucket.{rid}.id}}": str(resolve(a.get("bucket", "")))
            for rid, a in doc.get("resource", {}).get("aws_s3_bucket", {}).items()}


def _bucket_policies(doc: dict[str, Any], stacks: Stacks, resolve: Resolver, buckets: dict[str, str]) -> None:
    for attached in doc.get("resource", {}).get("aws_s3_bucket_policy", {}).values():
        if attached.get("bucket") in buckets and (policy := _doc_of(doc, attached.get("policy"), resolve)):
            stacks.bucket_policies[buckets[attached["bucket"]]] = policy


def _keys(doc: dict[str, Any], stacks: Stacks, resolve: Resolver, buckets: dict[str, str]) -> None:
    resources = doc.get("resource", {})
    for sse in resources.get("aws_s3_bucket_server_side_encryption_configuration", {}).values():
        for rule in sse.get("rule", []):
            default = rule.get("apply_server_side_encryption_by_default", {})
            if default.get("kms_master_key_id") and sse.get("bucket") in buckets:
                stacks.bucket_keys[buckets[sse["bucket"]]] = str(resolve(default["kms_master_key_id"]))
    for rid, key in resources.get("aws_kms_key", {}).items():
        arn = str(resolve(f"${{aws_kms_key.{rid}.arn}}"))
        # Without state a key's ARN is a pattern (AWS assigns its id), which would name every key.
        if "*" not in arn and (policy := _doc_of(doc, key.get("policy"), resolve)):
            stacks.key_policies[arn] = policy
    for rid, queue in resources.get("aws_sqs_queue", {}).items():
        if queue.get("kms_master_key_id"):
            stacks.queue_keys[str(resolve(f"${{aws_sqs_queue.{rid}.arn}}"))] = str(resolve(queue["kms_master_key_id"]))


def load_stacks(synth_dirs: list[Path], state_dir: Path | None = None) -> Stacks:
    """Every stack under each ``<synth dir>/stacks/``."""
    stacks = Stacks()
    for synth in synth_dirs:
        for path in sorted(synth.glob("stacks/*/cdk.tf.json")):
            doc = _read_json(path) or {}
            stack = path.parent.name
            provider: dict[str, Any] = next((p for p in doc.get("provider", {}).get("aws", []) if "alias" not in p), {})
            region = provider.get("region", "")
            tags = (provider.get("default_tags") or [{}])[0].get("tags", {})
            state = _state_for(doc, stack, state_dir)
            stacks.resolved_by_state[f"{synth.name}/{stack}"] = state is not None
            resolve = Resolver(doc, state, region, _remote_outputs(doc, state_dir))
            account = resolve("${data.aws_caller_identity.account.account_id}")
            if account != "*":
                stacks.accounts.add(account)
            stacks.roles += _roles(doc, stack, tags.get("gpufleet:team"), region, resolve)
            if (net := _network(doc, region, resolve)) is not None:
                stacks.networks[region] = net
            buckets = _buckets(doc, resolve)
            _keys(doc, stacks, resolve, buckets)
            _bucket_policies(doc, stacks, resolve, buckets)
    return stacks
