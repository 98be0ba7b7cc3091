"""A busy training host protects itself from scale-in and drops the protection when its job ends.

The agent runs as a real subprocess against the moto server, as a real moto instance of a real moto ASG
(named as the team runtime names it), so moto records the protection the agent sets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.aws import client
from tests.training.conftest import SCRIPTS, AgentProc, Team, wait_for

MOTO_AMI = "ami-12c6146b"   # one of the images moto ships


def _training_asg_instance(team: Team) -> str:
    """The training ASG with one moto instance; returns the instance id."""
    name = team.runtime.training.asg
    client(team.emu, "ec2").create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": MOTO_AMI, "InstanceType": "t3.micro"})
    autoscaling = client(team.emu, "autoscaling")
    autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": name},
                                          MinSize=0, MaxSize=1, DesiredCapacity=1, AvailabilityZones=["us-east-1a"])
    (instance,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "Instances"]
    return str(instance["InstanceId"])


def _protected(team: Team, instance_id: str) -> bool:
    found: list[dict[str, Any]] = client(team.emu, "autoscaling").describe_auto_scaling_instances(
        InstanceIds=[instance_id])["AutoScalingInstances"]
    return bool(found[0]["ProtectedFromScaleIn"])


def test_a_busy_training_host_is_protected_from_scale_in_only_while_its_job_runs(
        team: Team, start_agent: Callable[..., AgentProc]) -> None:
    instance_id = _training_asg_instance(team)
    assert not _protected(team, instance_id)
    agent = start_agent(instance_id)
    job_id = team.submit(SCRIPTS, name="busy", entry_point="sleep.py", hyperparameters={"seconds": 4})
    team.wait_status(job_id, ("RUNNING",), timeout_s=60)
    wait_for(lambda: _protected(team, instance_id), 30, "the agent to protect its host")
    assert team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=120)["status"] == "SUCCEEDED", agent.job_log()
    wait_for(lambda: not _protected(team, instance_id), 30, "the agent to drop the protection")
    assert "could not change scale-in protection" not in agent.agent_log()
