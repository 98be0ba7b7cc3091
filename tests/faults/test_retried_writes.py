"""Fault: an AWS write reaches the emulator twice, as when the provider's SDK retries a request whose response
it lost (root cause of the CreateLaunchTemplate AlreadyExists and DeleteLaunchTemplate NotFound flakes).

What must hold: the repeat is harmless, as on real EC2: a repeated create with the same ClientToken returns the
first template, and deleting a template that is already gone answers ``InvalidLaunchTemplateId.NotFound``, the
code the AWS provider treats as "already deleted"."""

from __future__ import annotations

import secrets

import pytest
from botocore.exceptions import ClientError

from gpufleet.local.emulator import Emulator
from tests.support.aws import client

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
