"""The local alarm evaluator and Auto Scaling policy executor, against a real moto server."""

from __future__ import annotations

import datetime as dt

import pytest

from gpufleet.errors import UserInputError
from gpufleet.local.alarms import AlarmEvaluator, expression_value, scaled_capacity
from gpufleet.local.emulator import Emulator
from gpufleet.rollout.steps import traffic_steps
from tests.support.aws import client


def test_metric_math_handles_if_fill_and_division_by_zero() -> None:
    assert expression_value("IF(r > 0, 100 * FILL(e, 0) / r, 0)", {"r": 200.0, "e": None}) == 0.0
    assert expression_value("IF(r > 0, 100 * FILL(e, 0) / r, 0)", {"r": 200.0, "e": 30.0}) == 15.0
    assert expression_value("IF(r > 0, 100 * e / r, 0)", {"r": 0.0, "e": 0.0}) == 0.0
    assert expression_value("visible + inflight", {"visible": 2.0, "inflight": None}) is None
    assert expression_value("100 * errors / MAX([requests, 1])", {"errors": 3.0, "requests": 0.0}) == 300.0
    assert expression_value("100 * errors / MAX([requests, 1])", {"errors": 3.0, "requests": 60.0}) == 5.0
    with pytest.raises(ValueError, match="unsupported"):
        expression_value("__import__('os')", {})


def test_step_scaling_picks_the_step_for_the_breach() -> None:
    out = {"PolicyType": "StepScaling", "AdjustmentType": "ChangeInCapacity",
           "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]}
    idle = {"PolicyType": "StepScaling", "AdjustmentType": "ExactCapacity",
            "StepAdjustments": [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": 0}]}
    assert scaled_capacity(out, 0, 2.0) == 1
    assert scaled_capacity(idle, 2, 0.0) == 0
    assert scaled_capacity({"AdjustmentType": "PercentChangeInCapacity", "ScalingAdjustment": 50}, 1, 1.0) == 2


def test_traffic_steps_per_strategy() -> None:
    assert traffic_steps("all-at-once") == [100]
    assert traffic_steps("canary", canary_percent=5) == [5, 100]
    assert traffic_steps("linear", linear_step=25) == [25, 50, 75, 100]
    with pytest.raises(UserInputError, match="--canary-percent"):
        traffic_steps("canary", canary_percent=100)


def test_queue_backlog_alarm_fires_and_its_step_policy_scales_the_asg_out(moto_server: Emulator) -> None:
    """The team stack's training scale-out (backlog alarm + step policy), which moto never evaluates."""
    cw, asg = client(moto_server, "cloudwatch"), client(moto_server, "autoscaling")
    ec2 = client(moto_server, "ec2")
    ec2.create_launch_template(LaunchTemplateName="alarmtest-lt", LaunchTemplateData={
        "ImageId": ec2.describe_images()["Images"][0]["ImageId"]})
    asg.create_auto_scaling_group(AutoScalingGroupName="alarmtest-t-training", MinSize=0, MaxSize=3,
                                  DesiredCapacity=0, LaunchTemplate={"LaunchTemplateName": "alarmtest-lt"},
                                  AvailabilityZones=["us-east-1a"])
    asg.put_scaling_policy(AutoScalingGroupName="alarmtest-t-training", PolicyName="out",
                           PolicyType="StepScaling", AdjustmentType="ChangeInCapacity",
                           StepAdjustments=[{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}])
    policy = asg.describe_policies(AutoScalingGroupName="alarmtest-t-training")["ScalingPolicies"][0]
    dims = [{"Name": "QueueName", "Value": "alarmtest-t-jobs"}]
    cw.put_metric_alarm(AlarmName="alarmtest-t-training-backlog", Namespace="AWS/SQS",
                        MetricName="ApproximateNumberOfMessagesVisible", Dimensions=dims, Statistic="Maximum",
                        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
                        TreatMissingData="notBreaching", AlarmActions=[policy["PolicyARN"]])
    evaluator = AlarmEvaluator(cw, asg, "alarmtest-t-")
    evaluator.tick()
    assert cw.describe_alarms(AlarmNames=["alarmtest-t-training-backlog"])["MetricAlarms"][0]["StateValue"] == "OK"
    cw.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateNumberOfMessagesVisible", "Dimensions": dims, "Value": 2.0,
        "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)}])
    evaluator.tick()
    alarm = cw.describe_alarms(AlarmNames=["alarmtest-t-training-backlog"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["alarmtest-t-training"])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1
    evaluator.tick()   # still in ALARM, but within the repeat interval: no second instance yet
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["alarmtest-t-training"])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1
