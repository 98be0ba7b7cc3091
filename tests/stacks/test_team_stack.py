"""Synth assertions: each guarantee of the team stack, on the real-AWS synth of examples/gpufleet.yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpufleet.schema import BUCKETS, RUNTIME_OUTPUT
from tests.stacks.conftest import EXAMPLE, Synth, one, policy_statements, referenced, resources

TEAM = "team-vision"  # g5/g6 training, one endpoint "digits"; the example sets a DR region
TEAM_BUCKETS = len(BUCKETS) + 1  # plus the artifacts replica in the DR region


def _by_bucket(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    """Sub-resources of the team buckets keyed by bucket name."""
    out = {}
    for r in resources(doc, rtype).values():
        out[referenced(doc, r["bucket"])["bucket"]] = r
    return out


def test_every_team_bucket_is_versioned_kms_encrypted_private_and_owner_enforced(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    names = {f"acme-vision-{b}" for b in BUCKETS}
    assert {r["bucket"] for r in resources(doc, "aws_s3_bucket").values()} == names | {"acme-vision-artifacts-dr"}
    assert all(not r.get("force_destroy") for r in resources(doc, "aws_s3_bucket").values())
    for name, v in _by_bucket(doc, "aws_s3_bucket_versioning").items():
        assert v["versioning_configuration"]["status"] == "Enabled", name
    for name, sse in _by_bucket(doc, "aws_s3_bucket_server_side_encryption_configuration").items():
        rule = sse["rule"][0]
        assert rule["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms", name
        assert "aws_kms_key" in rule["apply_server_side_encryption_by_default"]["kms_master_key_id"]
        assert rule["bucket_key_enabled"] is True
    for name, pab in _by_bucket(doc, "aws_s3_bucket_public_access_block").items():
        assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                            "restrict_public_buckets")), name
    for own in _by_bucket(doc, "aws_s3_bucket_ownership_controls").values():
        assert own["rule"]["object_ownership"] == "BucketOwnerEnforced"
    assert len(_by_bucket(doc, "aws_s3_bucket_ownership_controls")) == TEAM_BUCKETS


def test_team_buckets_log_to_the_platform_log_bucket_and_clean_up_uploads_and_old_checkpoints(
        aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    logs = _by_bucket(doc, "aws_s3_bucket_logging")
    assert len(logs) == len(BUCKETS), "all but the DR replica, whose region has no log bucket"
    for name, log in logs.items():
        assert log["target_bucket"] == "acme-logs", "the platform's log bucket"
        assert log["target_prefix"] == f"s3/vision/{name.removeprefix('acme-vision-')}/"
    lifecycles = _by_bucket(doc, "aws_s3_bucket_lifecycle_configuration")
    assert len(lifecycles) == TEAM_BUCKETS
    for rule in (lc["rule"][0] for lc in lifecycles.values()):
        assert rule["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 7
    assert lifecycles["acme-vision-checkpoints"]["rule"][0]["noncurrent_version_expiration"][0]["noncurrent_days"] == 14


def test_bucket_policies_deny_plain_http_and_object_access_outside_the_team(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    policies = _by_bucket(doc, "aws_s3_bucket_policy")
    assert len(policies) == TEAM_BUCKETS
    for name, policy in policies.items():
        statements = {s["sid"]: s for s in policy_statements(doc, policy["policy"])}
        tls = statements["DenyInsecureTransport"]
        assert tls["effect"] == "Deny"
        assert tls["actions"] == ["s3:*"], "every S3 action, s3:GetObjectVersion included, needs TLS"
        bucket_arn = tls["resources"][0]
        assert tls["resources"] == [bucket_arn, f"{bucket_arn}/*"], "the bucket and all its objects"
        assert tls["condition"] == [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}]
        scope = statements["DenyObjectAccessOutsideTeam"]
        allowed = scope["condition"][0]["values"]
        assert scope["condition"][0]["test"] == "ArnNotLike", name
        roles = {a.rsplit("/", 1)[-1] for a in allowed}
        team_roles = {"acme-vision-training", "acme-vision-serving", "acme-vision-operator", "acme-vision-job"}
        assert roles == (team_roles | {"acme-vision-replication"} if name == "acme-vision-artifacts" else team_roles)


def test_job_queues_are_encrypted_with_a_dead_letter_queue_and_heartbeat_friendly_visibility(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    dlq = one(doc, "aws_sqs_queue", lambda q: q["name"] == "acme-vision-jobs-dlq")
    assert "aws_kms_key" in dlq["kms_master_key_id"]
    assert len(resources(doc, "aws_sqs_queue")) == 5, "one queue per priority, one shared DLQ, the wake queue"
    redrives = set()
    queues = {q["name"]: q for q in resources(doc, "aws_sqs_queue").values()}
    wake = queues["acme-vision-jobs-wake"]
    assert wake["kms_master_key_id"] == dlq["kms_master_key_id"], "hints are encrypted with the team key"
    assert wake["message_retention_seconds"] == 60 and "redrive_policy" not in wake, "hints expire; none dead-letter"
    for name in ("acme-vision-jobs-high", "acme-vision-jobs", "acme-vision-jobs-low"):
        queue = queues[name]
        assert queue["visibility_timeout_seconds"] == 300
        assert "aws_kms_key" in queue["kms_master_key_id"]
        assert "deadLetterTargetArn" in queue["redrive_policy"] and "maxReceiveCount" in queue["redrive_policy"]
        assert "lifecycle" not in queue, "real AWS watches the redrive policy for drift"
        redrives.add(queue["redrive_policy"])
    assert len(redrives) == 1, "all priorities share the DLQ with the same redrive policy"
    (dlq_key,) = [k for k, q in resources(doc, "aws_sqs_queue").items() if q is dlq]
    assert f"aws_sqs_queue.{dlq_key}.arn" in next(iter(redrives))


def test_tables_are_on_demand_with_point_in_time_recovery_kms_and_deletion_protection(aws_stacks: Synth) -> None:
    tables = resources(aws_stacks[TEAM], "aws_dynamodb_table").values()
    assert {t["name"] for t in tables} == {"acme-vision-jobs", "acme-vision-models", "acme-vision-endpoints",
                                           "acme-vision-approvals"}
    for t in tables:
        assert t["billing_mode"] == "PAY_PER_REQUEST"
        assert t["point_in_time_recovery"] == {"enabled": True}
        sse = t["server_side_encryption"]
        assert sse["enabled"] is True and "aws_kms_key" in sse["kms_key_arn"]
        assert t["deletion_protection_enabled"] is True


def test_launch_templates_require_imdsv2_hop_limit_1_and_an_encrypted_gp3_root(aws_stacks: Synth) -> None:
    templates = resources(aws_stacks[TEAM], "aws_launch_template")
    assert {t["name"] for t in templates.values()} == {"acme-vision-training", "acme-vision-digits-blue",
                                                         "acme-vision-digits-green"}
    for t in templates.values():
        meta = t["metadata_options"]
        assert meta["http_tokens"] == "required" and meta["http_put_response_hop_limit"] == 1
        ebs = t["block_device_mappings"][0]["ebs"]
        assert ebs == {**ebs, "encrypted": "true", "volume_type": "gp3", "volume_size": 200}
        assert t["network_interfaces"][0]["associate_public_ip_address"] == "false"
        assert "data.aws_ami.gpu-ami" in t["image_id"]
        assert {s["resource_type"] for s in t["tag_specifications"]} == {"instance", "volume"}


def test_user_data_writes_the_agent_config_then_starts_the_agent(aws_stacks: Synth) -> None:
    templates = resources(aws_stacks[TEAM], "aws_launch_template")
    for t in templates.values():
        script = t["user_data"]
        assert script.startswith("${base64encode(join(")
        assert "/etc/gpufleet/agent.yaml" in script and "systemctl start gpufleet-agent" in script
    green = next(t for t in templates.values() if t["name"].endswith("green"))
    assert '"variant" = "green"' in green["user_data"] and '"role" = "serving"' in green["user_data"]
    training = next(t for t in templates.values() if t["name"].endswith("training"))
    assert '"role" = "training"' in training["user_data"]


def test_ami_comes_from_the_configured_name_pattern_and_owner(aws_stacks: Synth) -> None:
    ami = next(iter(aws_stacks[TEAM]["data"]["aws_ami"].values()))
    assert ami["owners"] == ["self"] and ami["most_recent"] is True
    assert ami["filter"] == [{"name": "name", "values": ["gpufleet-gpu-*"]}]


def test_training_asg_mixes_spot_and_on_demand_from_zero_up_to_the_quota(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    asg = one(doc, "aws_autoscaling_group", lambda a: a["name"] == "acme-vision-training")
    assert asg["min_size"] == 0 and asg["max_size"] == 4 and asg["capacity_rebalance"] is True
    policy = asg["mixed_instances_policy"]
    dist = policy["instances_distribution"]
    assert dist == {"on_demand_base_capacity": 0, "on_demand_percentage_above_base_capacity": 20,
                    "spot_allocation_strategy": "capacity-optimized"}
    assert [o["instance_type"] for o in policy["launch_template"]["override"]] == ["g5.xlarge", "g5.2xlarge",
                                                                                  "g6.xlarge"]
    assert "latest_version" in policy["launch_template"]["launch_template_specification"]["version"]
    assert asg["lifecycle"]["ignore_changes"] == ["desired_capacity"]


def test_training_scales_out_on_backlog_in_to_zero_when_idle_and_checkpoints_before_termination(
        aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    hook = one(doc, "aws_autoscaling_lifecycle_hook")
    assert hook["lifecycle_transition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["name"] == "acme-vision-training-checkpoint" and hook["default_result"] == "CONTINUE"
    policies = {p["name"]: p for p in resources(doc, "aws_autoscaling_policy").values()}
    out = policies["acme-vision-training-scale-out-on-backlog"]
    assert out["step_adjustment"] == [{"metric_interval_lower_bound": "0", "scaling_adjustment": 1}]
    to_zero = policies["acme-vision-training-scale-to-zero"]
    assert to_zero["adjustment_type"] == "ExactCapacity" and to_zero["step_adjustment"][0]["scaling_adjustment"] == 0
    alarms = {a["alarm_name"]: a for a in resources(doc, "aws_cloudwatch_metric_alarm").values()}
    queues = {"acme-vision-jobs-high", "acme-vision-jobs", "acme-vision-jobs-low"}
    backlog = alarms["acme-vision-training-backlog"]
    summed = _summed_queue_metrics(backlog["metric_query"])
    assert summed == {("ApproximateNumberOfMessagesVisible", q) for q in queues}, "every priority's backlog"
    assert "scale-out" in backlog["alarm_actions"][0]
    idle = alarms["acme-vision-training-idle"]
    assert idle["comparison_operator"] == "LessThanOrEqualToThreshold" and idle["threshold"] == 0
    assert _summed_queue_metrics(idle["metric_query"]) == {
        (m, q) for q in queues for m in ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible")}


def _summed_queue_metrics(queries: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(metric, queue) of each metric the alarm's one returned expression sums."""
    (result,) = [q for q in queries if q.get("return_data")]
    by_id = {q["id"]: q["metric"] for q in queries if "metric" in q}
    assert result["expression"] == f"SUM([{', '.join(by_id)}])"
    return {(m["metric_name"], m["dimensions"]["QueueName"]) for m in by_id.values()}


def test_endpoint_has_an_internal_alb_with_weighted_blue_green_that_terraform_leaves_to_rollouts(
        aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    alb = one(doc, "aws_lb")
    assert alb["internal"] is True and alb["drop_invalid_header_fields"] is True
    assert alb["access_logs"]["enabled"] is True
    listener = one(doc, "aws_lb_listener")
    assert listener["protocol"] == "HTTP" and listener["port"] == 80  # no certificate configured
    rule = one(doc, "aws_lb_listener_rule")
    groups = rule["action"][0]["forward"]["target_group"]
    assert [g["weight"] for g in groups] == [100, 0]
    assert rule["lifecycle"]["ignore_changes"] == ["action"]
    tgs = {t["name"]: t for t in resources(doc, "aws_lb_target_group").values()}
    assert set(tgs) == {"acme-vision-digits-blue", "acme-vision-digits-green"}
    assert all(t["health_check"]["path"] == "/ping" for t in tgs.values())
    sg = one(doc, "aws_security_group", lambda r: r["name"] == "acme-vision-digits-alb")
    assert [(i["from_port"], len(i["cidr_blocks"])) for i in sg["ingress"]] == [(80, 1)]
    assert "0.0.0.0/0" not in sg["ingress"][0]["cidr_blocks"]   # the VPC's range
    assert resources(doc, "aws_wafv2_web_acl") == {}


def test_clients_reach_only_ping_and_invocations_everything_else_is_a_fixed_404(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    listener = one(doc, "aws_lb_listener")
    assert listener["default_action"] == [{"type": "fixed-response", "fixed_response": {
        "content_type": "text/plain", "message_body": "not found", "status_code": "404"}}]
    rule = one(doc, "aws_lb_listener_rule")
    assert rule["condition"] == [{"path_pattern": {"values": ["/ping", "/invocations"]}}]
    assert "aws_lb_listener" in rule["listener_arn"]


def test_each_variant_has_an_asg_with_target_tracking_and_alarms_on_errors_and_p99(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    asgs = {a["name"]: a for a in resources(doc, "aws_autoscaling_group").values()}
    assert asgs["acme-vision-digits-blue"]["min_size"] == 1 and asgs["acme-vision-digits-green"]["min_size"] == 0
    blue = asgs["acme-vision-digits-blue"]
    assert blue["max_size"] == 4 and blue["health_check_type"] == "ELB"
    # Rollouts scale the retired colour to zero: Terraform must not put its min_size back.
    assert all(a["lifecycle"]["ignore_changes"] == ["desired_capacity", "min_size"] for a in asgs.values()
               if a["name"] != "acme-vision-training")
    tracking = [p for p in resources(doc, "aws_autoscaling_policy").values()
                if p["policy_type"] == "TargetTrackingScaling"]
    assert len(tracking) == 2
    for p in tracking:
        spec = p["target_tracking_configuration"]
        assert spec["predefined_metric_specification"]["predefined_metric_type"] == "ALBRequestCountPerTarget"
        assert spec["target_value"] == 200
    alarms = {a["alarm_name"]: a for a in resources(doc, "aws_cloudwatch_metric_alarm").values()}
    for v in ("blue", "green"):
        assert alarms[f"acme-vision-digits-{v}-p99-latency"]["extended_statistic"] == "p99"
        rate = alarms[f"acme-vision-digits-{v}-5xx-rate"]
        assert any("errors / MAX" in q.get("expression", "") for q in rate["metric_query"])
        assert "terraform_remote_state" in rate["alarm_actions"][0], "routed to the platform SNS topic"


def test_internet_facing_endpoint_is_https_only_allow_listed_and_behind_managed_waf_rules(
        internet_facing_stacks: Synth) -> None:
    doc = internet_facing_stacks["team-web"]
    listeners = {r["port"]: r for r in resources(doc, "aws_lb_listener").values()}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["ssl_policy"].startswith("ELBSecurityPolicy-TLS13")
    assert listeners[443]["default_action"][0]["fixed_response"]["status_code"] == "404"
    assert listeners[80]["default_action"] == [{"type": "redirect", "redirect": {
        "port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}]
    rule = one(doc, "aws_lb_listener_rule")
    assert "443" not in rule["listener_arn"] and rule["condition"][0]["path_pattern"]["values"] == [
        "/ping", "/invocations"]
    assert one(doc, "aws_lb")["internal"] is False
    sg = one(doc, "aws_security_group", lambda r: r["name"] == "acme-web-chat-alb")
    assert sorted((i["from_port"], tuple(i["cidr_blocks"])) for i in sg["ingress"]) == [
        (80, ("203.0.113.0/24",)), (443, ("203.0.113.0/24",))]
    acl = one(doc, "aws_wafv2_web_acl")
    assert acl["scope"] == "REGIONAL" and acl["default_action"] == {"allow": {}}
    groups = [r["statement"]["managed_rule_group_statement"] for r in acl["rule"]]
    assert {g["vendor_name"] for g in groups} == {"AWS"}
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= {g["name"] for g in groups}
    association = one(doc, "aws_wafv2_web_acl_association")
    assert "aws_lb." in association["resource_arn"] and "aws_wafv2_web_acl." in association["web_acl_arn"]
    assert len(resources(internet_facing_stacks["platform"], "aws_internet_gateway")) == 1
    assert len([s for s in resources(internet_facing_stacks["platform"], "aws_subnet").values()
                if s["tags"]["gpufleet:tier"] == "public"]) == 2


def test_no_checkov_skip_calls_an_internet_facing_endpoint_internal(internet_facing_stacks: Synth) -> None:
    text = json.dumps(internet_facing_stacks["team-web"])
    assert "internal endpoint" not in text and "internal load balancer" not in text


def test_dashboard_and_runtime_output_cover_everything_the_agents_and_cli_read(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    assert one(doc, "aws_cloudwatch_dashboard")["dashboard_name"] == "acme-vision-dashboard"
    runtime = doc["output"][RUNTIME_OUTPUT]["value"]
    for key in ("queue_url", "queues", "dlq_url", "buckets", "tables", "training", "alb_dns", "listener_arn",
                "target_groups", "asgs", "alarms", "acme-vision-digits-blue"):
        assert key in runtime


def test_serving_user_data_without_an_endpoint_is_rejected_at_synth() -> None:
    import pytest

    from gpufleet.stacks.team_fleets import agent_user_data

    runtime = {"platform": "p", "team": "t", "region": "us-east-1",
               "buckets": {b: f"p-t-{b}" for b in BUCKETS}, "queue_url": "q", "dlq_url": "d",
               "tables": {"jobs": "j", "models": "m", "endpoints": "e", "approvals": "a"},
               "training": {"asg": "p-t-training"}}
    with pytest.raises(ValueError, match="endpoint"):
        agent_user_data(runtime, "serving")


def test_artifacts_replicate_kms_encrypted_to_a_bucket_in_the_dr_region(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    providers = {p.get("alias"): p["region"] for p in doc["provider"]["aws"]}
    assert providers == {None: "us-east-1", "dr": "us-west-2"}
    replication = one(doc, "aws_s3_bucket_replication_configuration")
    assert referenced(doc, replication["bucket"])["bucket"] == "acme-vision-artifacts"
    rule = replication["rule"][0]
    assert rule["status"] == "Enabled" and rule["delete_marker_replication"] == {"status": "Enabled"}
    assert rule["source_selection_criteria"]["sse_kms_encrypted_objects"] == {"status": "Enabled"}
    replica = referenced(doc, rule["destination"]["bucket"])
    assert replica["bucket"] == "acme-vision-artifacts-dr" and replica["provider"] == "aws.dr"
    replica_key = referenced(doc, rule["destination"]["encryption_configuration"]["replica_kms_key_id"])
    assert replica_key["provider"] == "aws.dr" and replica_key["enable_key_rotation"] is True
    role = referenced(doc, replication["role"])
    trust = policy_statements(doc, role["assume_role_policy"])[0]
    assert trust["principals"] == [{"type": "Service", "identifiers": ["s3.amazonaws.com"]}]
    assert "aws_iam_policy.boundary" in role["permissions_boundary"]


def test_without_a_dr_region_nothing_replicates(tmp_path_factory: pytest.TempPathFactory) -> None:
    import yaml

    from tests.stacks.conftest import config_with, synth

    data = yaml.safe_load(EXAMPLE.read_text())
    del data["platform"]["dr_region"]
    _, stacks = synth(config_with({"platform": data["platform"]}), tmp_path_factory.mktemp("nodr"), "aws")
    assert not resources(stacks[TEAM], "aws_s3_bucket_replication_configuration")
    assert len(stacks[TEAM]["provider"]["aws"]) == 1


def _role_grants(doc: dict[str, Any], role: str) -> list[tuple[str, str]]:
    """(action, resource expression) pairs of a role's inline policy."""
    role_res = one(doc, "aws_iam_role", lambda r: r["name"] == role)
    inline = [p for p in resources(doc, "aws_iam_role_policy").values()
              if referenced(doc, p["role"]) is role_res]
    return [(a, r) for p in inline for s in policy_statements(doc, p["policy"]) for a in s["actions"]
            for r in s.get("resources", [])]


def _table(doc: dict[str, Any], name: str) -> str:
    return next(k for k, t in resources(doc, "aws_dynamodb_table").items() if t["name"] == name)


def _bucket(doc: dict[str, Any], name: str) -> str:
    return next(k for k, b in resources(doc, "aws_s3_bucket").items() if b["bucket"] == name)


def test_only_the_operator_role_writes_approvals_and_serving_reads_them(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    approvals = _table(doc, "acme-vision-approvals")
    writers = {role for role in ("acme-vision-training", "acme-vision-serving", "acme-vision-operator",
                                 "acme-vision-job")
               if any(a == "dynamodb:PutItem" and approvals in r for a, r in _role_grants(doc, role))}
    assert writers == {"acme-vision-operator"}
    assert any(a == "dynamodb:GetItem" and approvals in r for a, r in _role_grants(doc, "acme-vision-serving"))
    assert not any(approvals in r for _, r in _role_grants(doc, "acme-vision-training"))


def test_training_hosts_add_artifacts_but_never_delete_or_touch_the_registry_export(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    artifacts = _bucket(doc, "acme-vision-artifacts")
    on_artifacts = [(a, r) for a, r in _role_grants(doc, "acme-vision-training") if artifacts in r]
    assert {r.split("}", 1)[1] for _, r in on_artifacts if "}/" in r} == {"/code/*", "/models/*"}
    assert not any(a.startswith("s3:Delete") for a, _ in on_artifacts)
    assert not any(a == "s3:PutObject" and r.endswith("/code/*") for a, r in on_artifacts)
    # Write-once: every put under models/ is conditioned (If-None-Match present, or a multipart upload's
    # create and parts, which create nothing); no grant there lets a put replace a key.
    puts = [st for st in _role_statements(doc, "training").values()
            if "s3:PutObject" in st["actions"] and any(artifacts in r for r in st["resources"])]
    assert sorted(c["test"] + " " + c["variable"] + "=" + ",".join(c["values"])
                  for st in puts for c in st.get("condition", [{"test": "none", "variable": "", "values": []}])) == [
        "Bool s3:ObjectCreationOperation=false", "Null s3:if-none-match=false"]


def test_the_job_role_is_assumable_by_training_hosts_and_reaches_no_registry_queue_or_artifact(
        aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    job = one(doc, "aws_iam_role", lambda r: r["name"] == "acme-vision-job")
    trust = referenced(doc, job["assume_role_policy"])["statement"][0]
    assert trust["principals"][0]["identifiers"][0].startswith("${aws_iam_role.training-role")
    grants = _role_grants(doc, "acme-vision-job")
    assert grants and not {a.split(":")[0] for a, _ in grants} & {"dynamodb", "sqs", "sts", "iam", "autoscaling"}
    assert not any(_bucket(doc, "acme-vision-artifacts") in r for _, r in grants)
    assert any(a == "sts:AssumeRole" and r.endswith(":role/acme-vision-job")
               for a, r in _role_grants(doc, "acme-vision-training"))


def test_statement_refuses_wildcard_actions_in_an_allow_but_takes_them_in_a_deny() -> None:
    from gpufleet.constructs.policy import Statement

    with pytest.raises(ValueError, match="wildcard actions are not allowed in an Allow"):
        Statement("TooBroad", ("s3:*",), ("arn:aws:s3:::b/*",))
    with pytest.raises(ValueError, match="wildcard"):
        Statement("Everything", ("*",), ("*",))
    deny = Statement("DenyPlainHttp", ("s3:*",), ("arn:aws:s3:::b", "arn:aws:s3:::b/*"), effect="Deny")
    assert deny.render()["actions"] == ["s3:*"]
    with pytest.raises(ValueError, match="effect must be Allow or Deny"):
        Statement("Typo", ("s3:GetObject",), ("*",), effect="deny")


def _role_statements(doc: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    """The inline policy statements of one team role (``training``, ``serving``, ``operator``), by sid."""
    (inline,) = [p for p in resources(doc, "aws_iam_role_policy").values()
                 if referenced(doc, p["role"])["name"] == f"acme-vision-{role}"]
    return {s["sid"]: s for s in policy_statements(doc, inline["policy"])}


def _granted(statements: dict[str, dict[str, Any]], action: str) -> list[list[str]]:
    return [s["resources"] for s in statements.values() if action in s["actions"] and s["effect"] == "Allow"]


def test_host_roles_are_granted_every_call_their_agents_make_on_their_own_resources(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    training, serving = _role_statements(doc, "training"), _role_statements(doc, "serving")
    queues = {"acme-vision-jobs-high", "acme-vision-jobs", "acme-vision-jobs-low"}
    sends = {referenced(doc, arn)["name"] for arns in _granted(training, "sqs:SendMessage") for arn in arns}
    wake = "acme-vision-jobs-wake"
    assert sends == queues | {"acme-vision-jobs-dlq", wake}, "re-queueing with a hint; dead-lettering"
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):
        assert {referenced(doc, arn)["name"] for arns in _granted(training, action) for arn in arns} == queues | {wake}
    assert not [arn for arns in _granted(training, "sqs:ChangeMessageVisibility") for arn in arns
                if referenced(doc, arn)["name"] == wake], "hints are deleted or expire, never held"
    assert {referenced(doc, arn)["name"] for arns in _granted(_role_statements(doc, "operator"), "sqs:SendMessage")
            for arn in arns} == queues | {wake}, "a submit sends its job and the job's hint"
    asg_prefix = ("arn:${data.aws_partition.partition.partition}:autoscaling:us-east-1:"
                  "${data.aws_caller_identity.account.account_id}:autoScalingGroup:*:autoScalingGroupName/")
    assert _granted(serving, "autoscaling:SetInstanceHealth") == [
        [f"{asg_prefix}acme-vision-digits-blue", f"{asg_prefix}acme-vision-digits-green"]]
    assert _granted(training, "autoscaling:SetInstanceProtection") == [[f"{asg_prefix}acme-vision-training"]]
    assert not _granted(training, "autoscaling:RecordLifecycleActionHeartbeat"), "nothing calls it"
    group_arn = ("arn:${data.aws_partition.partition.partition}:logs:us-east-1:"
                 "${data.aws_caller_identity.account.account_id}:log-group:/acme/vision/training-jobs")
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert _granted(training, action) == [[group_arn, f"{group_arn}:log-stream:*"]], action
    assert not _granted(training, "logs:CreateLogGroup"), "the stack owns the group"



def _actions(statements: dict[str, dict[str, Any]]) -> set[str]:
    return {a for s in statements.values() if s["effect"] == "Allow" for a in s["actions"]}


def test_roles_get_only_the_actions_their_calls_use(aws_stacks: Synth) -> None:
    """Least privilege as `gpufleet audit` measures it: no KMS action beyond what S3, SQS and DynamoDB use
    for the caller, no deletes, no object versions, no batch or describe calls nothing makes, no DLQ grant."""
    doc = aws_stacks[TEAM]
    roles = {r: _role_statements(doc, r) for r in ("training", "serving", "operator")}
    never = {"kms:Encrypt", "kms:DescribeKey", "kms:ReEncryptFrom", "kms:ReEncryptTo", "s3:DeleteObject",
             "s3:DeleteObjectVersion", "s3:GetObjectVersion", "s3:ListBucketVersions", "s3:GetBucketLocation",
             "s3:ListMultipartUploadParts", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
             "dynamodb:DeleteItem", "dynamodb:DescribeTable", "dynamodb:ConditionCheckItem",
             "sqs:GetQueueUrl", "cloudwatch:GetMetricData"}
    via_dynamodb = [{"test": "StringEquals", "variable": "kms:ViaService",
                     "values": ["dynamodb.us-east-1.amazonaws.com"]}]
    for role, statements in roles.items():
        table_keys = {sid: s for sid, s in statements.items() if s.get("condition") == via_dynamodb}
        assert table_keys, f"{role}: DynamoDB uses the table key for the caller: it needs a ViaService grant"
        assert all(set(s["actions"]) == {"kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"}
                   for s in table_keys.values())
        others = {sid: s for sid, s in statements.items() if sid not in table_keys}
        assert not _actions(others) & never, role
    assert {a for a in _actions(roles["serving"]) if a.startswith(("dynamodb:", "s3:"))} == {
        "dynamodb:GetItem", "s3:GetObject", "s3:PutObject"}
    assert "dynamodb:Scan" not in _actions(roles["training"])
    assert len(_granted(roles["training"], "sqs:GetQueueAttributes")) == 1, "the redrive limit, read at start"
    assert "sqs:GetQueueAttributes" not in _actions(roles["serving"]) | _actions(roles["operator"])
    assert _granted(roles["operator"], "dynamodb:Scan"), "`gpufleet job list` and the registry export scan"
    (dlq,) = [k for k, r in resources(doc, "aws_sqs_queue").items() if r["name"] == "acme-vision-jobs-dlq"]
    assert not [r for s in roles["operator"].values() for r in s["resources"] if f"aws_sqs_queue.{dlq}." in r]

def test_job_log_group_is_kms_encrypted_kept_a_year_and_in_the_runtime(aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    group = one(doc, "aws_cloudwatch_log_group")
    assert (group["name"], group["retention_in_days"]) == ("/acme/vision/training-jobs", 365)
    key = referenced(doc, group["kms_key_id"])
    statements = {s["sid"]: s for s in policy_statements(doc, key["policy"])}
    logs_use = statements["CloudWatchLogsUseJobLogs"]
    assert logs_use["principals"] == [{"type": "Service", "identifiers": ["logs.us-east-1.amazonaws.com"]}]
    assert logs_use["condition"][0]["variable"] == "kms:EncryptionContext:aws:logs:arn"
    assert "/acme/vision/training-jobs" in doc["output"][RUNTIME_OUTPUT]["value"]


def test_team_image_repository_is_immutable_scanned_kms_encrypted_and_pulled_only_by_the_team(
        aws_stacks: Synth) -> None:
    doc = aws_stacks[TEAM]
    repo = one(doc, "aws_ecr_repository")
    assert repo["name"] == "acme-vision-images" and repo["image_tag_mutability"] == "IMMUTABLE"
    assert repo["image_scanning_configuration"]["scan_on_push"] is True
    [encryption] = repo["encryption_configuration"]
    assert encryption["encryption_type"] == "KMS" and "aws_kms_key" in encryption["kms_key"]
    assert not repo.get("force_delete")
    for role in ("training", "serving"):
        statements = _role_statements(doc, role)
        assert _granted(statements, "ecr:GetAuthorizationToken") == [["*"]], role
        for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
            [[arn]] = _granted(statements, action)
            assert referenced(doc, arn) is repo, (role, action)
        assert not _granted(statements, "ecr:PutImage"), "hosts only pull"
    assert _granted(_role_statements(doc, "operator"), "ecr:PutImage"), "operators push images"
    runtime = doc["output"][RUNTIME_OUTPUT]["value"]   # agents and the CLI resolve relative images with it
    [repo_id] = resources(doc, "aws_ecr_repository")
    assert f'"image_repository"=aws_ecr_repository.{repo_id}.repository_url' in runtime.replace(" ", "")


def test_an_endpoint_image_reaches_the_runtime_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    import yaml

    from tests.stacks.conftest import config_with, synth

    data = yaml.safe_load(EXAMPLE.read_text())
    data["teams"][0]["endpoints"][0]["image"] = "acme-vision-images:serve-v3"
    _, stacks = synth(config_with({"teams": data["teams"]}), tmp_path_factory.mktemp("image"), "aws")
    runtime = stacks[TEAM]["output"][RUNTIME_OUTPUT]["value"].replace(" ", "")
    assert '"alarms"=[' in runtime and '"image"="acme-vision-images:serve-v3"' in runtime
