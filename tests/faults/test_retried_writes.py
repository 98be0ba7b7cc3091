"""Fault: an AWS write reaches the emulator twice, as when the provider's SDK retries a request whose response
it lost (root cause of the CreateLaunchTemplate AlreadyExists, DeleteLaunchTemplate NotFound and DeleteTable
ResourceNotFoundException flakes).

What must hold: the repeat is harmless, as on real EC2 and DynamoDB: a repeated create with the same ClientToken
returns the first template, deleting a template that is already gone answers ``InvalidLaunchTemplateId.NotFound``,
and deleting a table that is already gone answers ``Requested resource not found: Table: <name> not found``: the
code and message the AWS provider treats as "already deleted". Beyond those, an SDK's retry of any request the
emulator already answered (same ``amz-sdk-invocation-id``) gets that answer again (``gpufleet.local.replay``),
so a lost answer to a create moto would fail a second time (a security group) is harmless too. The last test
shows the whole path with the real provider behind a proxy that loses the emulator's answers
(tests/support/faultproxy.py)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from gpufleet.local.emulator import Emulator
from gpufleet.terraform.runner import StackRunner
from tests.support.aws import client
from tests.support.faultproxy import FaultProxy

MOTO_AMI = "ami-12c6146b"


def test_a_repeated_create_with_one_client_token_returns_the_first_template(moto_server: Emulator) -> None:
    ec2 = client(moto_server, "ec2")
    name, token = f"retry-{secrets.token_hex(3)}", secrets.token_hex(8)
    request = {"LaunchTemplateName": name, "ClientToken": token, "LaunchTemplateData": {"ImageId": MOTO_AMI}}
    first = ec2.create_launch_template(**request)["LaunchTemplate"]
    repeat = ec2.create_launch_template(**request)["LaunchTemplate"]
    assert repeat["LaunchTemplateId"] == first["LaunchTemplateId"]
    found = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    assert [t["LaunchTemplateId"] for t in found] == [first["LaunchTemplateId"]]
    with pytest.raises(ClientError, match="AlreadyExists"):  # a new token is a new request: the name is taken
        ec2.create_launch_template(**{**request, "ClientToken": secrets.token_hex(8)})


def test_deleting_a_gone_template_by_id_answers_the_code_the_provider_treats_as_deleted(
        moto_server: Emulator) -> None:
    ec2 = client(moto_server, "ec2")
    template = ec2.create_launch_template(LaunchTemplateName=f"retry-{secrets.token_hex(3)}",
                                          LaunchTemplateData={"ImageId": MOTO_AMI})["LaunchTemplate"]
    ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
    with pytest.raises(ClientError) as repeat:
        ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
    assert repeat.value.response["Error"]["Code"] == "InvalidLaunchTemplateId.NotFound"


def test_deleting_a_gone_table_names_it_as_the_provider_expects(moto_server: Emulator) -> None:
    dynamodb = client(moto_server, "dynamodb")
    name = f"retry-{secrets.token_hex(3)}"
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    dynamodb.delete_table(TableName=name)
    with pytest.raises(ClientError) as repeat:
        dynamodb.delete_table(TableName=name)
    assert repeat.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert repeat.value.response["Error"]["Message"] == f"Requested resource not found: Table: {name} not found"


def test_an_sdk_retry_of_an_answered_create_gets_the_first_answer(moto_server: Emulator) -> None:
    """boto3 through a proxy that loses the emulator's answer to CreateSecurityGroup: botocore retries with the
    same invocation ID and gets the group the first attempt made, where moto alone answers InvalidGroup.Duplicate;
    a new call with the same name is a new operation and still fails as on AWS."""
    name = f"retry-sg-{secrets.token_hex(3)}"
    ec2 = client(moto_server, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    with FaultProxy(moto_server.endpoint) as proxy:
        through_proxy = boto3.client("ec2", **{**moto_server.boto_kwargs("us-east-1"), "endpoint_url": proxy.url},
                                     config=Config(retries={"mode": "standard", "max_attempts": 3}))
        proxy.drop_response("CreateSecurityGroup", times=1)
        group = through_proxy.create_security_group(GroupName=name, Description="retry", VpcId=vpc)["GroupId"]
        assert [c.outcome for c in proxy.calls if c.action == "CreateSecurityGroup"] == ["dropped", "forwarded"]
        with pytest.raises(ClientError, match="Duplicate"):
            through_proxy.create_security_group(GroupName=name, Description="retry", VpcId=vpc)
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    assert [g["GroupId"] for g in found] == [group]


def _retried_writes_config(endpoint: str, name: str) -> dict[str, Any]:
    """The smallest Terraform config holding one launch template and one table, its provider pointed at
    ``endpoint``."""
    provider = {"region": "us-east-1", "access_key": "testing", "secret_key": "testing",
                "skip_credentials_validation": True, "skip_requesting_account_id": True,
                "skip_metadata_api_check": "true",
                "endpoints": [{"ec2": endpoint, "sts": endpoint, "dynamodb": endpoint, "cloudwatch": endpoint}]}
    table = {"name": name, "billing_mode": "PAY_PER_REQUEST", "hash_key": "id",
             "attribute": [{"name": "id", "type": "S"}]}
    return {"terraform": {"required_providers": {"aws": {"source": "hashicorp/aws"}}},
            "provider": {"aws": [provider]},
            "resource": {"aws_launch_template": {"lt": {"name": name, "image_id": MOTO_AMI}},
                         "aws_dynamodb_table": {"table": table},
                         "aws_cloudwatch_dashboard": {"board": {"dashboard_name": name,
                                                                "dashboard_body": json.dumps({"widgets": []})}}}}


@pytest.mark.e2e
def test_terraform_rides_out_a_lost_create_and_lost_delete_responses(moto_server: Emulator, tmp_path: Path) -> None:
    """The real provider, with the emulator's answer to its CreateLaunchTemplate, then to its
    DeleteLaunchTemplate, DeleteTable and DeleteDashboards, lost on the way back (the proxy closes the
    connection after the emulator answered): the SDK retries each, and apply and destroy still succeed, leaving
    exactly one template, then none, and no table. (A repeated DeleteDashboards is one moto fails and no fix in
    the launcher covers: only the replay of the first answer makes it harmless.)"""
    name = f"retry-tf-{secrets.token_hex(3)}"
    ec2 = client(moto_server, "ec2")
    with FaultProxy(moto_server.endpoint) as proxy:
        (tmp_path / "main.tf.json").write_text(json.dumps(_retried_writes_config(proxy.url, name)))
        runner = StackRunner(tmp_path, tmp_path / "workspace")
        runner.init()
        proxy.drop_response("CreateLaunchTemplate", times=1)
        applied = runner.apply()
        assert not applied.errors, applied.errors
        creates = [c.outcome for c in proxy.calls if c.action == "CreateLaunchTemplate"]
        assert creates[:2] == ["dropped", "forwarded"], creates  # the SDK did retry a write that had happened
        assert len(ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]) == 1
        proxy.drop_response("DeleteLaunchTemplate", times=1)
        proxy.drop_response("DeleteTable", times=1)
        proxy.drop_response("DeleteDashboards", times=1)
        destroyed = runner.destroy()
        assert not destroyed.errors, destroyed.errors
        for action in ("DeleteLaunchTemplate", "DeleteTable", "DeleteDashboards"):
            deletes = [c.outcome for c in proxy.calls if c.action == action]
            assert deletes[:2] == ["dropped", "forwarded"], (action, deletes)
    with pytest.raises(ClientError, match="NotFound"):
        ec2.describe_launch_templates(LaunchTemplateNames=[name])
    assert name not in client(moto_server, "dynamodb").list_tables()["TableNames"]
