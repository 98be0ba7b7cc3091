"""IAM isolation: nothing in team A's stack (role policies, boundary, trust, bucket and key policies)
grants access to team B's resources, and the reverse. The team names share a prefix (``ml``, ``ml-ops``),
so a lazy ``<platform>-ml-*`` pattern would be caught."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.conftest import REF, Synth, config_with, data_sources, resources, synth

ACCOUNT, REGION = "123456789012", "us-east-1"
# Actions AWS offers no resource type for; the only statements allowed a "*" resource.
NO_RESOURCE_ACTIONS = {
    "cloudwatch:PutMetricData", "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetHealth", "autoscaling:DescribeAutoScalingGroups",
    "ecr:GetAuthorizationToken",
}
NAME_FIELDS = ("bucket", "name", "alarm_name", "description")


@pytest.fixture(scope="module")
def two_teams(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    team = {"training": {"instance_types": ["g5.xlarge"]},
            "endpoints": [{"name": "chat", "instance_type": "g5.xlarge"}]}
    cfg = config_with({"platform": {"name": "p", "region": REGION},
                       "teams": [{"name": "ml", **team}, {"name": "ml-ops", **team}]})
    return synth(cfg, Path(tmp_path_factory.mktemp("iso")), "aws")[1]


def _literal(value: str) -> str:
    return (value.replace("${data.aws_partition.partition.partition}", "aws")
            .replace("${data.aws_caller_identity.account.account_id}", ACCOUNT))


def team_arns(doc: dict[str, Any]) -> list[str]:
    """Concrete ARNs of every named resource in a team stack, as AWS would assign them."""
    arns = []
    for r in resources(doc, "aws_s3_bucket").values():
        arns += [f"arn:aws:s3:::{r['bucket']}", f"arn:aws:s3:::{r['bucket']}/models/m/1/model.tar.gz"]
    for r in resources(doc, "aws_sqs_queue").values():
        arns.append(f"arn:aws:sqs:{REGION}:{ACCOUNT}:{r['name']}")
    for r in resources(doc, "aws_dynamodb_table").values():
        arns.append(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{r['name']}")
    for r in resources(doc, "aws_autoscaling_group").values():
        arns.append(f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:0f1e:autoScalingGroupName/{r['name']}")
    for r in resources(doc, "aws_iam_role").values():
        arns.append(f"arn:aws:iam::{ACCOUNT}:role/{r['name']}")
    for r in resources(doc, "aws_cloudwatch_metric_alarm").values():
        arns.append(f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{r['alarm_name']}")
    for r in resources(doc, "aws_lb").values():
        arns.append(f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/{r['name']}/50dc6c495c0c9188/f2f7")
    return arns


def _own_names(doc: dict[str, Any]) -> set[str]:
    return {str(r[f]) for entries in doc.get("resource", {}).values() for r in entries.values()
            for f in NAME_FIELDS if f in r}


def _name_of(doc: dict[str, Any], target: dict[str, Any]) -> str:
    """A resource's name; for unnamed ones (a listener), the name of the resource it belongs to."""
    for f in NAME_FIELDS:
        if f in target:
            return str(target[f])
    parent = next(REF.search(v) for v in target.values() if isinstance(v, str) and REF.search(v))
    assert parent is not None
    return _name_of(doc, doc["resource"][parent[2]][parent[3]])


def _statements(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, s) for name, d in data_sources(doc, "aws_iam_policy_document").items() for s in d["statement"]]


def _strings(statement: dict[str, Any]) -> list[str]:
    out = list(statement.get("resources", []))
    out += [i for p in statement.get("principals", []) for i in p["identifiers"]]
    out += [v for c in statement.get("condition", []) for v in c["values"]]
    return out


def assert_isolated(stacks: Synth, a: str, b: str) -> None:
    doc_a, doc_b = stacks[f"team-{a}"], stacks[f"team-{b}"]
    own, foreign = _own_names(doc_a), team_arns(doc_b)
    assert foreign, "team B has resources to protect"
    for doc_name, statement in _statements(doc_a):
        where = f"team-{a} {doc_name} {statement['sid']}"
        for value in _strings(statement):
            ref = REF.search(value)
            if ref and not ref[1] and ref[2] != "aws_kms_key":
                name = _name_of(doc_a, doc_a["resource"][ref[2]][ref[3]])
                assert name in own and name.startswith(f"p-{a}-"), f"{where}: references {name}"
                continue
            if ref:
                continue  # this stack's own key, the platform's state, or a data source
            literal = _literal(value)
            if literal == "*":
                is_key_policy = doc_name.startswith("key_policy") or statement["effect"] == "Deny"
                assert is_key_policy or set(statement["actions"]) <= NO_RESOURCE_ACTIONS, \
                    f"{where}: '*' resource for {statement['actions']}"
                continue
            hits = [arn for arn in foreign if fnmatchcase(arn, literal)]
            assert not hits, f"{where}: {literal} matches team {b}'s {hits}"
            assert not re.search(rf"p-{re.escape(b)}-", literal), f"{where}: names team {b}: {literal}"


def test_team_ml_grants_nothing_on_team_ml_ops(two_teams: Synth) -> None:
    assert_isolated(two_teams, "ml", "ml-ops")


def test_team_ml_ops_grants_nothing_on_team_ml(two_teams: Synth) -> None:
    assert_isolated(two_teams, "ml-ops", "ml")


def test_the_check_catches_a_prefix_wildcard(two_teams: Synth) -> None:
    """The test itself would fail on the classic mistake: a team-prefix wildcard."""
    leaky = {k: v for k, v in two_teams.items()}
    doc = leaky["team-ml"]
    doc["data"]["aws_iam_policy_document"]["leak"] = {"statement": [
        {"sid": "Leak", "effect": "Allow", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::p-ml-*"]}]}
    try:
        with pytest.raises(AssertionError, match="matches team ml-ops"):
            assert_isolated(leaky, "ml", "ml-ops")
    finally:
        del doc["data"]["aws_iam_policy_document"]["leak"]


def test_every_role_has_the_team_boundary_and_no_wildcard_actions_in_an_allow(two_teams: Synth) -> None:
    for team in ("ml", "ml-ops"):
        doc = two_teams[f"team-{team}"]
        roles = resources(doc, "aws_iam_role").values()
        assert len(roles) == 4   # training, serving, operator, job
        assert all("aws_iam_policy.boundary" in r["permissions_boundary"] for r in roles)
        for _, statement in _statements(doc):
            if statement["effect"] == "Deny":   # a wildcard in a Deny closes gaps (the TLS-only s3:*)
                continue
            assert not any(a == "*" or a.endswith(":*") for a in statement["actions"]), statement["sid"]
