"""End to end against moto server with the real CLI and the real Terraform: deploy the platform and two
teams (one with an endpoint), re-plan to no changes, gate the plans with checkov, confirm key properties
with boto3, check the written team runtime configs, destroy, and find nothing left.

Also covers the foundation's end-to-end path (deploy -> empty plan -> destroy -> nothing left).

The CLI reaches the emulator through a proxy that loses the emulator's first answer to every distinct write
(tests/support/faultproxy.py), as a loaded machine now and then does: the SDKs retry, and deploy, re-plan and
destroy must still come out exact, with nothing left behind (what a lost answer did before: the CI flakes on
CreateLaunchTemplate, DeleteLaunchTemplate and DeleteTable, see gpufleet/local/replay.py)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.local.emulator import Emulator
from gpufleet.schema.runtime import load_runtime
from gpufleet.terraform.runner import StackRunner
from policies import gate
from tests.support.aws import client
from tests.support.faultproxy import FaultProxy, first_of_each_write

pytestmark = pytest.mark.e2e
STACKS = ("platform", "team-alpha", "team-beta")


def _config(platform: str) -> dict[str, Any]:
    return {"platform": {"name": platform, "region": "us-east-1", "az_count": 2},
            "teams": [
                {"name": "alpha", "training": {"instance_types": ["g5.xlarge", "g6.xlarge"], "on_demand_base": 0,
                                               "spot_percentage": 70, "max_instances": 2},
                 "endpoints": [{"name": "digits", "instance_type": "g5.xlarge", "min_instances": 1,
                                "max_instances": 2}]},
                {"name": "beta", "operators": ["arn:aws:iam::123456789012:role/beta-leads"],
                 "training": {"instance_types": ["g6e.xlarge"], "max_instances": 1}}]}


def _cli(action: str, cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gpufleet.cli", action, "--config", "gpufleet.yaml"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"gpufleet {action} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "local mode" in proc.stderr and "Deep Learning AMI" in proc.stderr, "differences printed"
    return time.monotonic() - started


def _show_json(runner: StackRunner, plan: Path) -> Path:
    shown = subprocess.run([runner.binary, "show", "-json", str(plan)], cwd=runner.stack_dir, env=runner.env,
                           capture_output=True, text=True, check=True, timeout=120)
    out = plan.with_suffix(".json")
    out.write_text(shown.stdout)
    return out


def test_cli_deploys_platform_and_two_teams_replans_clean_and_destroys_everything(
        moto_server: Emulator, repo_env: dict[str, str], tmp_path: Path) -> None:
    prefix = f"e2e{secrets.token_hex(2)}"
    (tmp_path / "gpufleet.yaml").write_text(yaml.safe_dump(_config(prefix)))
    home = tmp_path / ".gpufleet"
    home.mkdir()
    proxy = FaultProxy(moto_server.endpoint)
    proxy.drop_response(match=first_of_each_write(), times=None)
    # the CLI finds the session's moto, behind the proxy
    (home / "emulator.json").write_text(json.dumps({**asdict(moto_server), "endpoint": proxy.url}))
    env = {**repo_env, "GPUFLEET_HOME": str(home), "GPUFLEET_TARGET": "local"}
    destroyed = False
    try:
        apply_s = _cli("deploy", tmp_path, env)
        print(f"\ne2e: deploy (synth + 3 stacks) {apply_s:.0f} s")
        stacks_dir = tmp_path / "cdktf.out" / "stacks"
        started = time.monotonic()
        for stack in STACKS:
            runner = StackRunner(stacks_dir / stack, home)
            plan = tmp_path / f"{stack}.tfplan"
            assert not runner.plan(out=plan).has_changes, f"{stack}: the second plan is not empty"
            result = gate.check_plan(_show_json(runner, plan), stacks_dir / stack)
            assert result.failed == [], f"{stack} plan: {result.failed}"
        print(f"e2e: plans + checkov on plans {time.monotonic() - started:.0f} s")
        runtimes = {t: load_runtime(home / "teams" / f"{t}.json") for t in ("alpha", "beta")}
        _assert_properties(moto_server, prefix, runtimes)
        destroy_s = _cli("destroy", tmp_path, env)
        destroyed = True
        assert not (home / "teams" / "alpha.json").exists()
        assert _leftovers(moto_server, prefix) == {}
        lost = {f"{c.service}:{c.action}" for c in proxy.calls if c.outcome == "dropped"}
        assert {"ec2:CreateLaunchTemplate", "ec2:DeleteLaunchTemplate", "dynamodb:DeleteTable",
                "iam:CreateRole", "sqs:CreateQueue", "elasticloadbalancing:CreateLoadBalancer"} <= lost, lost
        print(f"e2e: destroy {destroy_s:.0f} s; {len(lost)} kinds of write had their first answer lost")
    finally:
        if not destroyed:
            proxy.heal()
            subprocess.run([sys.executable, "-m", "gpufleet.cli", "destroy", "--config", "gpufleet.yaml"],
                           cwd=tmp_path, env=env, capture_output=True, timeout=600, check=False)
        proxy.close()


def _assert_properties(emu: Emulator, prefix: str, runtimes: dict[str, Any]) -> None:
    ec2, s3, sqs = client(emu, "ec2"), client(emu, "s3"), client(emu, "sqs")
    versions = ec2.describe_launch_template_versions(LaunchTemplateName=f"{prefix}-alpha-training")
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    alpha = runtimes["alpha"]
    for bucket in (alpha.buckets.artifacts, alpha.buckets.checkpoints):
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4
    assert alpha.queues is not None and alpha.queues.normal == alpha.queue_url
    for url in alpha.priority_queues.values():   # every priority shares the DLQ, with the same redrive
        redrive = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
                             ["Attributes"]["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(f"{prefix}-alpha-jobs-dlq")
    asg = client(emu, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[alpha.training.asg])["AutoScalingGroups"][0]
    mixed = asg["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in mixed["LaunchTemplate"]["Overrides"]] == ["g5.xlarge", "g6.xlarge"]
    assert mixed["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 30
    assert asg["MinSize"] == 0 and asg["MaxSize"] == 2
    endpoint = alpha.endpoints["digits"]
    listener = client(emu, "elbv2").describe_listeners(ListenerArns=[endpoint.listener_arn])["Listeners"][0]
    assert listener["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    rule = client(emu, "elbv2").describe_rules(RuleArns=[endpoint.rule_arn])["Rules"][0]
    assert sorted(rule["Conditions"][0]["PathPatternConfig"]["Values"]) == ["/invocations", "/ping"]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}
    assert weights == {endpoint.target_groups.blue: 100, endpoint.target_groups.green: 0}
    backups = client(emu, "dynamodb").describe_continuous_backups(TableName=alpha.tables.models)
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] \
        == "ENABLED"
    assert runtimes["beta"].endpoints == {} and runtimes["beta"].team == "beta"


def _leftovers(emu: Emulator, prefix: str) -> dict[str, list[str]]:
    """Every gpufleet resource type still named after this platform."""
    found = {
        "buckets": [b["Name"] for b in client(emu, "s3").list_buckets()["Buckets"]],
        "queues": client(emu, "sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", []),
        "tables": client(emu, "dynamodb").list_tables()["TableNames"],
        "asgs": [a["AutoScalingGroupName"] for a in client(emu, "autoscaling").describe_auto_scaling_groups()
                 ["AutoScalingGroups"]],
        "launch_templates": [t["LaunchTemplateName"] for t in client(emu, "ec2").describe_launch_templates()
                             ["LaunchTemplates"]],
        "load_balancers": [lb["LoadBalancerName"] for lb in client(emu, "elbv2").describe_load_balancers()
                           ["LoadBalancers"]],
        "roles": [r["RoleName"] for r in client(emu, "iam").list_roles()["Roles"]],
        "alarms": [a["AlarmName"] for a in client(emu, "cloudwatch").describe_alarms(AlarmNamePrefix=prefix)
                   ["MetricAlarms"]],
        "topics": [t["TopicArn"].rsplit(":", 1)[-1] for t in client(emu, "sns").list_topics()["Topics"]],
        "key_aliases": [a["AliasName"].removeprefix("alias/") for a in client(emu, "kms").list_aliases()["Aliases"]],
        "vpcs": [v["VpcId"] for v in client(emu, "ec2").describe_vpcs(
            Filters=[{"Name": "tag:gpufleet:platform", "Values": [prefix]}])["Vpcs"]],
    }
    left = {}
    for kind, names in found.items():
        ours = [n for n in names if kind in ("vpcs", "queues") or n.startswith(prefix)]
        if ours:
            left[kind] = ours
    return left
