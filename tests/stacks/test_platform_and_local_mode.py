"""The platform stack's guarantees, and local mode switching off exactly the listed features."""

from __future__ import annotations

from collections import Counter

from gpufleet.local.differences import LOCAL_MODE_DIFFERENCES
from tests.stacks.conftest import Synth, data_sources, one, policy_statements, referenced, resources


def test_platform_has_a_private_multi_az_vpc_with_s3_endpoint_flow_logs_and_locked_default_sg(
        aws_stacks: Synth) -> None:
    doc = aws_stacks["platform"]
    assert one(doc, "aws_vpc")["cidr_block"] == "10.40.0.0/16"
    subnets = resources(doc, "aws_subnet").values()
    assert len(subnets) == 2 and all(s["tags"]["gpufleet:tier"] == "private" for s in subnets)
    assert all(s["map_public_ip_on_launch"] is False for s in subnets)
    assert not resources(doc, "aws_internet_gateway"), "no internet-facing endpoint in the example"
    assert not resources(doc, "aws_nat_gateway")
    assert one(doc, "aws_vpc_endpoint")["service_name"] == "com.amazonaws.us-east-1.s3"
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
                   "tag_specifications", "redrive policy", "replication rule", "no lifecycle configuration"):
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
