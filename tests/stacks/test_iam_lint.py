"""Every policy document synthesized from examples/gpufleet.yaml (role policies, the permission boundary,
trust, bucket and key policies) passes the offline IAM linter parliament (duo-labs), with only its known
false positives left, each listed below with its reason.

Terraform references in the documents are replaced by the ARNs AWS would give those resources.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import sys
import types
from typing import Any

import pytest

from tests.stacks.conftest import Synth, data_sources

ACCOUNT, REGION = "123456789012", "us-east-1"
REF = re.compile(r"\$\{(data\.)?([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}")

# (issue, statement sid or document, action) -> why it is not a defect. parliament reads identity
# policies; resource policies and its old action table explain the rest.
KNOWN_FALSE_POSITIVES = {
    ("RESOURCE_MISMATCH", "elasticloadbalancing:ModifyRule"):
        "parliament's action table predates listener-rule/app/... ARNs; AWS's service reference lists them",
    ("RESOURCE_STAR", "key policy"):
        'in a KMS key policy "*" is the key itself (AWS docs, "Key policies in AWS KMS")',
    ("MALFORMED", "trust policy"):
        "a trust policy names a principal and no Resource, which parliament expects of identity policies",
}


@pytest.fixture(scope="module")
def parliament() -> Any:
    """parliament 1.6 imports pkg_resources, which setuptools >= 82 no longer ships (duo-labs/parliament#247);
    its only use is resource_filename, given here from importlib.resources."""
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ModuleNotFoundError:
            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = shim
    return pytest.importorskip("parliament")


def _arn(doc: dict[str, Any], match: re.Match[str]) -> str:
    """The ARN (or id) AWS would give the referenced resource."""
    block = doc["data" if match[1] else "resource"]
    kind, target, attr = match[2], block[match[2]][match[3]], match[4]
    if kind == "aws_partition":
        return "aws"
    if kind == "aws_caller_identity":
        return ACCOUNT
    if kind == "aws_s3_bucket":
        return f"arn:aws:s3:::{target['bucket']}"
    if kind == "aws_sqs_queue":
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{target['name']}"
    if kind == "aws_ecr_repository":
        return f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{target['name']}"
    if kind == "aws_dynamodb_table":
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{target['name']}"
    if kind in ("aws_kms_key", "aws_kms_alias") and attr in ("arn", "target_key_arn"):
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    if kind == "aws_lb_listener":
        return f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/alb/50dc6c495c0c9188/f2f7d6f0"
    if kind == "aws_lb_listener_rule":
        return (f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener-rule/app/alb/50dc6c495c0c9188/"
                "f2f7d6f0/9683b2d02a6cabee")
    if kind == "aws_cloudwatch_metric_alarm" and attr == "alarm_name":
        return str(target["alarm_name"])
    if kind == "aws_iam_role":
        return f"arn:aws:iam::{ACCOUNT}:role/{target['name']}"
    raise AssertionError(f"no ARN rule for {match[0]}: add one")


def _literal(doc: dict[str, Any], value: str) -> str:
    return REF.sub(lambda m: _arn(doc, m), value)


def _iam_json(doc: dict[str, Any], statements: list[dict[str, Any]]) -> str:
    """An ``aws_iam_policy_document``'s statements as the IAM JSON Terraform renders."""
    out = []
    for s in statements:
        st: dict[str, Any] = {"Sid": s["sid"], "Effect": s["effect"], "Action": s["actions"]}
        if "resources" in s:
            st["Resource"] = [_literal(doc, r) for r in s["resources"]]
        if "principals" in s:
            st["Principal"] = {p["type"]: [_literal(doc, i) for i in p["identifiers"]] for p in s["principals"]}
        for c in s.get("condition", []):
            values = [_literal(doc, v) for v in c["values"]]
            # parliament mis-parses one-element value lists; IAM takes a single value as a string too.
            st.setdefault("Condition", {}).setdefault(c["test"], {})[c["variable"]] = \
                values[0] if len(values) == 1 else values
        out.append(st)
    return json.dumps({"Version": "2012-10-17", "Statement": out})


def _kind(doc: dict[str, Any], name: str) -> str:
    """What a policy document is used as: its users reference ``...aws_iam_policy_document.<name>.json``."""
    needle = f"data.aws_iam_policy_document.{name}.json"
    for rtype, entries in doc.get("resource", {}).items():
        for r in entries.values():
            for field, value in r.items():
                if isinstance(value, str) and needle in value:
                    return {"aws_kms_key": "key policy", "aws_iam_role": "trust policy",
                            "aws_s3_bucket_policy": "bucket policy"}.get(rtype, f"{rtype}.{field}")
    return "unused"


def _finding_key(finding: Any, kind: str) -> tuple[str, str]:
    detail = finding.detail if isinstance(finding.detail, list) else [finding.detail]
    actions = {d.get("action") for d in detail if isinstance(d, dict)}
    if finding.issue == "RESOURCE_MISMATCH" and actions == {"elasticloadbalancing:ModifyRule"}:
        return finding.issue, "elasticloadbalancing:ModifyRule"
    return finding.issue, kind


def test_every_synthesized_policy_document_passes_parliament(aws_stacks: Synth, parliament: Any) -> None:
    linted, unexpected, excused = 0, [], set()
    for stack, doc in aws_stacks.items():
        for name, document in data_sources(doc, "aws_iam_policy_document").items():
            kind = _kind(doc, name)
            policy = parliament.analyze_policy_string(_iam_json(doc, document["statement"]))
            linted += 1
            for finding in policy.findings:
                key = _finding_key(finding, kind)
                if key in KNOWN_FALSE_POSITIVES:
                    excused.add(key)
                else:
                    unexpected.append(f"{stack} {name} ({kind}): {finding.issue} {finding.detail}")
    assert unexpected == [], "\n".join(unexpected)
    assert linted >= 30, "role, boundary, trust, bucket and key policies of the platform and two teams"
    assert excused == set(KNOWN_FALSE_POSITIVES), f"stale entries: {set(KNOWN_FALSE_POSITIVES) - excused}"


def test_the_lint_catches_a_real_mistake(parliament: Any) -> None:
    """An action on a resource type it cannot act on (objects vs the bucket) is found, not excused."""
    bad: dict[str, Any] = {"data": {}, "resource": {}}
    policy = parliament.analyze_policy_string(_iam_json(bad, [
        {"sid": "Wrong", "effect": "Allow", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::bucket"]}]))
    assert [f.issue for f in policy.findings] == ["RESOURCE_MISMATCH"]
