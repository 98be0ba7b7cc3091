"""The local alarm evaluator and Auto Scaling policy executor, against a real moto server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gpufleet.errors import UserInputError
from gpufleet.local.alarms import (
    LOCAL_TIME_SCALE,
    AlarmEvaluator,
    MetricReader,
    expression_value,
    next_state,
    scaled_capacity,
)
from gpufleet.local.cloud import LocalCloud
from gpufleet.local.emulator import Emulator
from gpufleet.rollout.guard import detection_window
from gpufleet.rollout.steps import traffic_steps
from tests.support.aws import client, create_team_resources


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
    """The team stack's training scale-out (backlog alarm + step policy), which moto never evaluates: the
    alarm sums the backlog of the three priority queues, and only the high queue has a data point."""
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
    queues = ["alarmtest-t-jobs-high", "alarmtest-t-jobs", "alarmtest-t-jobs-low"]
    visible = [{"Id": f"visible{i}", "ReturnData": False, "MetricStat": {"Period": 60, "Stat": "Maximum", "Metric": {
        "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": q}]}}} for i, q in enumerate(queues)]
    cw.put_metric_alarm(AlarmName="alarmtest-t-training-backlog", EvaluationPeriods=1, Threshold=1,
                        ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
                        AlarmActions=[policy["PolicyARN"]],
                        Metrics=[*visible, {"Id": "backlog", "Expression": "SUM([visible0, visible1, visible2])",
                                            "ReturnData": True}])
    dims = [{"Name": "QueueName", "Value": "alarmtest-t-jobs-high"}]
    evaluator = AlarmEvaluator(cw, asg, "alarmtest-t-", LOCAL_TIME_SCALE)
    evaluator.tick()
    assert cw.describe_alarms(AlarmNames=["alarmtest-t-training-backlog"])["MetricAlarms"][0]["StateValue"] == "OK"
    period = 60 / LOCAL_TIME_SCALE
    now = dt.datetime.now(dt.UTC)
    in_last_period = dt.datetime.fromtimestamp((now.timestamp() // period) * period - period / 2, dt.UTC)
    cw.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateNumberOfMessagesVisible", "Dimensions": dims, "Value": 2.0,
        "Timestamp": in_last_period}])
    evaluator.tick(now)
    alarm = cw.describe_alarms(AlarmNames=["alarmtest-t-training-backlog"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["alarmtest-t-training"])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1
    evaluator.tick(now)   # still in ALARM, but within the repeat interval: no second instance yet
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["alarmtest-t-training"])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1



def test_local_cloud_publishes_the_depth_of_every_priority_queue_and_the_dlq(moto_server: Emulator,
                                                                             tmp_path: Path) -> None:
    """moto publishes no SQS metrics; the local cloud does, for each queue the scaling alarms sum."""
    runtime = create_team_resources(moto_server, platform="pub", team="t")
    sqs, cw = client(moto_server, "sqs"), client(moto_server, "cloudwatch")
    assert runtime.queues is not None
    sqs.send_message(QueueUrl=runtime.queues.high, MessageBody="{}")
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    LocalCloud(tmp_path, moto_server.endpoint).publish_queue_metrics(runtime)

    def depth(queue: str) -> float | None:
        points = cw.get_metric_statistics(
            Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible", Statistics=["Maximum"],
            Dimensions=[{"Name": "QueueName", "Value": queue}], StartTime=started, Period=60,
            EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))["Datapoints"]
        return max((p["Maximum"] for p in points), default=None)

    assert depth("pub-t-jobs-high") == 1.0
    assert depth("pub-t-jobs") == 0.0 and depth("pub-t-jobs-low") == 0.0 and depth("pub-t-jobs-dlq") == 0.0

class PeriodValues:
    """A metric reader answering from a table of per-period values (None: no data point)."""

    def __init__(self, by_start: dict[float, float | None]) -> None:
        self.by_start = by_start

    def stat(self, namespace: str, name: str, dims: list[dict[str, str]], stat: str,
             start: dt.datetime, end: dt.datetime) -> float | None:
        return self.by_start.get(start.timestamp())


STACK_5XX = {"AlarmName": "web-blue-5xx-rate", "Namespace": "AWS/ApplicationELB", "MetricName": "5xx",
             "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "Threshold": 5.0,
             "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching", "StateValue": "OK"}


def _state(alarm: dict[str, object], values: list[float | None], scale: float = 1.0) -> str:
    """The state at 12:03:30 given the values of the periods 12:02, 12:01, 12:00 (newest first)."""
    now = dt.datetime(2026, 1, 1, 12, 3, 30, tzinfo=dt.UTC)
    period = 60 / scale
    last_end = (now.timestamp() // period) * period
    table = {last_end - period * (k + 1): v for k, v in enumerate(values)}
    return next_state(alarm, PeriodValues(table), now, scale)[0]  # type: ignore[arg-type]


def test_alarm_needs_m_of_n_complete_periods_and_treats_missing_data_as_configured() -> None:
    """CloudWatch semantics: 2 of 3 breaching periods, aligned to period boundaries, the period still
    filling never counted; missing data as notBreaching, breaching, missing or ignore."""
    assert _state(STACK_5XX, [50.0, 0.0, 0.0]) == "OK"          # one bad minute of three
    assert _state(STACK_5XX, [50.0, None, 50.0]) == "ALARM"     # two of three, a gap between
    assert _state(STACK_5XX, [50.0, None, None]) == "OK"        # missing counts as good
    assert _state({**STACK_5XX, "TreatMissingData": "breaching"}, [50.0, None, 0.0]) == "ALARM"
    assert _state({**STACK_5XX, "TreatMissingData": "missing"}, [None, None, None]) == "INSUFFICIENT_DATA"
    assert _state({**STACK_5XX, "TreatMissingData": "ignore", "StateValue": "ALARM"}, [None] * 3) == "ALARM"
    assert _state(STACK_5XX, [50.0, 50.0, 0.0], scale=LOCAL_TIME_SCALE) == "ALARM"   # 5 s periods locally
    now = dt.datetime(2026, 1, 1, 12, 3, 30, tzinfo=dt.UTC)
    filling = {dt.datetime(2026, 1, 1, 12, 3, tzinfo=dt.UTC).timestamp(): 50.0,
               dt.datetime(2026, 1, 1, 12, 2, tzinfo=dt.UTC).timestamp(): 50.0}
    assert next_state(STACK_5XX, PeriodValues(filling), now)[0] == "OK"   # 12:03 is not complete yet


class CountingCloudWatch:
    """GetMetricStatistics over a table of per-period values (by period start), counting the requests."""

    def __init__(self) -> None:
        self.by_start: dict[float, float] = {}
        self.requests = 0

    def get_metric_statistics(self, StartTime: dt.datetime, Statistics: list[str],  # boto3 keyword names
                              **_: object) -> dict[str, list[dict[str, float]]]:
        self.requests += 1
        value = self.by_start.get(StartTime.timestamp())
        return {"Datapoints": [] if value is None else [{Statistics[0]: value}]}


def test_a_window_is_read_every_tick_until_two_periods_after_it_ended_then_remembered() -> None:
    """15 periods of one metric: the first tick reads all 15, later ticks only the two that may still get
    data points; a point that lands in the newest window after a tick still counts at the next."""
    alarm = {**STACK_5XX, "EvaluationPeriods": 15, "DatapointsToAlarm": 1}
    cw = CountingCloudWatch()
    reader = MetricReader(cw)
    now = dt.datetime(2026, 1, 1, 12, 3, 30, tzinfo=dt.UTC)

    def tick(at: dt.datetime) -> str:
        reader.new_tick(at)
        return next_state(alarm, reader, at)[0]

    assert tick(now) == "OK" and cw.requests == 15
    assert tick(now + dt.timedelta(seconds=1)) == "OK" and cw.requests == 17
    cw.by_start[dt.datetime(2026, 1, 1, 12, 2, tzinfo=dt.UTC).timestamp()] = 50.0   # the newest complete period
    assert tick(now + dt.timedelta(seconds=2)) == "ALARM" and cw.requests == 19
    # 12:04:31 reads periods 12:03 (new), 12:02 (still recent) and 12:01 (settling now); the rest from memory.
    assert tick(now + dt.timedelta(seconds=61)) == "ALARM" and cw.requests == 22
    # 12:05:02 reads 12:04 (new), 12:03 (still recent) and 12:02 (settling now, its 50 still counted).
    assert tick(now + dt.timedelta(seconds=92)) == "ALARM" and cw.requests == 25


def test_detection_window_is_period_times_evaluation_periods_plus_the_metric_delay() -> None:
    window = detection_window(STACK_5XX)
    assert window.seconds == 60 * 3 + 60
    math_alarm = {"AlarmName": "x", "EvaluationPeriods": 2, "Metrics": [
        {"Id": "e", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "a"}, "Period": 300,
                                   "Stat": "Sum"}}, {"Id": "r", "Expression": "e * 2"}]}
    assert detection_window(math_alarm).seconds == 300 * 2 + 60
    assert "60 s x 3 periods (2 of 3 to alarm) + 60 s metric delay = 240 s" in window.describe()
