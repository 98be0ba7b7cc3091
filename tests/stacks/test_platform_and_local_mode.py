"""The platform stack's guarantees, and local mode switching off exactly the listed features."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gpufleet.constructs.network import GATEWAY_SERVICES, HOST_SERVICES, HOST_TRAFFIC
from gpufleet.local.differences import LOCAL_MODE_DIFFERENCES
from tests.conftest import REPO_ROOT
from tests.stacks.conftest import (
    EXAMPLE,
    Synth,
    config_with,
    data_sources,
    one,
    policy_statements,
    referenced,
    resources,
    synth,
)

# How host code names a boto3 client: clients.client("x"), the s3/sqs/cloudwatch shortcuts, clients.table(...)
CLIENT_CALL = re.compile(r'\bclient\("([a-z0-9-]+)"\)|\.(s3|sqs|cloudwatch)\b(?!\.amazonaws)|\.(table)\(')


def _modules_run_on_hosts() -> set[Path]:
    """The agent's modules and every gpufleet module they import, transitively."""
    todo = [p for p in (REPO_ROOT / "gpufleet" / "agent").rglob("*.py")]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in (n for n in names if n.startswith("gpufleet")):
                base = REPO_ROOT / name.replace(".", "/")
                todo += [base.with_suffix(".py"), base / "__init__.py"]
    return seen


def services_hosts_call() -> set[str]:
    found = set()
    for path in _modules_run_on_hosts():
        for match in CLIENT_CALL.finditer(path.read_text()):
            found.add("dynamodb" if match[3] else match[1] or match[2])
    return found


def _endpoints(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """By service: what follows ``com.amazonaws.<region>.`` (``s3``, ``ecr.api``)."""
    return {e["service_name"].split(".", 3)[-1]: e for e in resources(doc, "aws_vpc_endpoint").values()}


def test_host_services_list_every_service_the_agent_code_calls() -> None:
    called = services_hosts_call()
    assert {"s3", "sqs", "dynamodb", "cloudwatch", "logs", "autoscaling"} <= called, called  # the scan works
    assert called <= set(HOST_SERVICES), f"add {called - set(HOST_SERVICES)} to network.HOST_SERVICES"


def test_without_nat_every_service_the_hosts_call_has_a_vpc_endpoint(aws_stacks: Synth) -> None:
    doc = aws_stacks["platform"]
    assert not resources(doc, "aws_nat_gateway")
    endpoints = _endpoints(doc)
    assert set(endpoints) == {HOST_SERVICES[s] for s in services_hosts_call()} | set(HOST_TRAFFIC)
    private_rt = one(doc, "aws_route_table", lambda t: t["tags"]["Name"] == "acme-vpc-private")
    private_subnets = sorted(f"${{aws_subnet.{k}.id}}" for k, s in resources(doc, "aws_subnet").items()
                             if s["tags"]["gpufleet:tier"] == "private")
    for service, endpoint in endpoints.items():
        assert endpoint["service_name"] == f"com.amazonaws.us-east-1.{service}"
        if service in GATEWAY_SERVICES:
            assert endpoint["vpc_endpoint_type"] == "Gateway"
            assert referenced(doc, endpoint["route_table_ids"][0]) is private_rt
            continue
        assert endpoint["vpc_endpoint_type"] == "Interface", service
        assert endpoint["private_dns_enabled"] is True, "agents use the regional API names"
        assert sorted(endpoint["subnet_ids"]) == private_subnets, "one ENI per AZ, in the private subnets"
        (sg_ref,) = endpoint["security_group_ids"]
        sg = referenced(doc, sg_ref)
        assert [(r["protocol"], r["from_port"], r["to_port"], r["cidr_blocks"]) for r in sg["ingress"]] == \
            [("tcp", 443, 443, ["10.40.0.0/16"])], "HTTPS from the VPC only"
        assert "egress" not in sg


def test_with_nat_only_the_free_gateway_endpoints_remain(tmp_path_factory: pytest.TempPathFactory) -> None:
    import yaml

    platform = {**yaml.safe_load(EXAMPLE.read_text())["platform"], "nat_gateway": True}
    doc = synth(config_with({"platform": platform}), tmp_path_factory.mktemp("nat"), "aws")[1]["platform"]
    assert len(resources(doc, "aws_nat_gateway")) == 1
    assert set(_endpoints(doc)) == set(GATEWAY_SERVICES)
    assert not [sg for sg in resources(doc, "aws_security_group").values() if "endpoints" in sg["name"]]


def test_platform_has_a_private_multi_az_vpc_with_s3_endpoint_flow_logs_and_locked_default_sg(
        aws_stacks: Synth) -> None:
    doc = aws_stacks["platform"]
    assert one(doc, "aws_vpc")["cidr_block"] == "10.40.0.0/16"
    subnets = resources(doc, "aws_subnet").values()
    assert len(subnets) == 2 and all(s["tags"]["gpufleet:tier"] == "private" for s in subnets)
    assert all(s["map_public_ip_on_launch"] is False for s in subnets)
    assert not resources(doc, "aws_internet_gateway"), "no internet-facing endpoint in the example"
    assert not resources(doc, "aws_nat_gateway")
    flow = one(doc, "aws_flow_log")
    assert flow["log_destination_type"] == "s3" and flow["traffic_type"] == "ALL"
    default_sg = one(doc, "aws_default_security_group")
    assert "ingress" not in default_sg and "egress" not in default_sg


def test_platform_key_rotates_and_encrypts_the_alarm_topic(aws_stacks: Synth) -> None:
    doc = aws_stacks["platform"]
    key = one(doc, "aws_kms_key")
    assert key["enable_key_rotation"] is True
    topic = one(doc, "aws_sns_topic")
    assert "aws_kms_key" in topic["kms_master_key_id"]
    services = [s for s in policy_statements(doc, key["policy"]) if s["sid"] == "ServicesUseForThisAccount"]
    assert services[0]["principals"] == [{"type": "Service", "identifiers": ["cloudwatch.amazonaws.com"]}]


def test_log_bucket_accepts_only_log_delivery_and_expires_logs(aws_stacks: Synth) -> None:
    doc = aws_stacks["platform"]
    bucket = one(doc, "aws_s3_bucket")
    assert bucket["bucket"] == "acme-logs"
    policy = one(doc, "aws_s3_bucket_policy")
    sids = {s["sid"] for s in policy_statements(doc, policy["policy"])}
    assert {"DenyInsecureTransport", "S3AccessLogDelivery", "FlowLogDelivery", "AlbLogDelivery"} <= sids
    rule = one(doc, "aws_s3_bucket_lifecycle_configuration")["rule"][0]
    assert rule["expiration"][0]["days"] == 365


def test_team_stacks_take_network_topic_and_log_bucket_from_the_platform_state(aws_stacks: Synth) -> None:
    doc = aws_stacks["team-vision"]
    remote = data_sources(doc, "terraform_remote_state")
    assert len(remote) == 1
    asg = one(doc, "aws_autoscaling_group", lambda a: a["name"] == "acme-vision-training")
    assert all("terraform_remote_state" in s for s in asg["vpc_zone_identifier"])


def _type_counts(stacks: Synth) -> Counter[str]:
    return Counter(t for doc in stacks.values() for t, entries in doc.get("resource", {}).items()
                   for _ in entries)


def test_local_mode_differs_from_real_aws_only_in_the_listed_ways(aws_stacks: Synth, local_stacks: Synth) -> None:
    aws, local = _type_counts(aws_stacks), _type_counts(local_stacks)
    # Bucket policies: local keeps only the log bucket's (its statements are unconditional Allows).
    assert aws["aws_s3_bucket_policy"] == 13 and local["aws_s3_bucket_policy"] == 1  # 1 + 2 x (5 + DR replica)
    # Lifecycle configurations: one per bucket on real AWS, none locally.
    assert aws["aws_s3_bucket_lifecycle_configuration"] == aws["aws_s3_bucket"] == 13
    assert local["aws_s3_bucket_lifecycle_configuration"] == 0
    differing = ("aws_s3_bucket_policy", "aws_s3_bucket_lifecycle_configuration")
    assert {t: n for t, n in aws.items() if t not in differing} == \
        {t: n for t, n in local.items() if t not in differing}
    team = local_stacks["team-vision"]
    assert all(b["force_destroy"] is True for b in resources(team, "aws_s3_bucket").values())
    assert one(team, "aws_ecr_repository")["force_delete"] is True
    assert all(t["deletion_protection_enabled"] is False for t in resources(team, "aws_dynamodb_table").values())
    ami = next(iter(team["data"]["aws_ami"].values()))
    assert ami["owners"] == ["898082745236"]
    assert all(t["lifecycle"]["ignore_changes"] == ["tag_specifications"]
               for t in resources(team, "aws_launch_template").values())
    queue = one(team, "aws_sqs_queue", lambda q: q["name"].endswith("jobs"))
    assert queue["lifecycle"]["ignore_changes"] == ["redrive_policy"]
    log_policy = one(local_stacks["platform"], "aws_s3_bucket_policy")
    assert all(s["effect"] == "Allow" for s in policy_statements(local_stacks["platform"], log_policy["policy"]))
    # Every one of those is on the printed list.
    listed = " ".join(f for f, _ in LOCAL_MODE_DIFFERENCES)
    assert one(team, "aws_s3_bucket_replication_configuration")["lifecycle"]["ignore_changes"] == ["rule"]
    for phrase in ("force-destroyable", "deletion protection", "TLS-only and team-scope", "Deep Learning AMI",
                   "tag_specifications", "redrive policy", "replication rule", "no lifecycle configuration",
                   "image repository (ECR)", "local podman images"):
        assert phrase in listed


def test_local_mode_still_encrypts_blocks_public_access_and_requires_imdsv2(local_stacks: Synth) -> None:
    team = local_stacks["team-vision"]
    assert len(resources(team, "aws_s3_bucket_public_access_block")) == 6
    for sse in resources(team, "aws_s3_bucket_server_side_encryption_configuration").values():
        assert sse["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    for t in resources(team, "aws_launch_template").values():
        assert t["metadata_options"]["http_tokens"] == "required"
        assert t["block_device_mappings"][0]["ebs"]["encrypted"] == "true"
    provider = team["provider"]["aws"][0]
    assert provider["endpoints"][0]["s3"] == "http://127.0.0.1:1"
    assert referenced(team, one(team, "aws_sqs_queue", lambda q: q["name"].endswith("jobs"))["kms_master_key_id"])
