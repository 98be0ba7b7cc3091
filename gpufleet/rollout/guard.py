"""How long a rollout step must bake so that the endpoint's alarms can fire before traffic moves on.

An alarm on a metric with period P, evaluated over N periods, sees a bad canary at the latest N x P after
the canary starts, plus the time the metric takes to reach CloudWatch. A bake shorter than that promotes
a bad canary before its alarm can fire, so the default bake is the longest detection window among the
endpoint's alarms, read from CloudWatch itself (what is deployed, not what the config meant to deploy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Seconds from the end of a period until its data point is in CloudWatch. The ALB publishes its metrics
# once a minute (Elastic Load Balancing user guide, "CloudWatch metrics for your Application Load
# Balancer": "reports metrics to CloudWatch only when requests are flowing ... every 60 seconds"), so a
# period's data can land up to a minute after the period ends. The same figure serves for the SQS
# metrics (one-minute publication) and as the default for other namespaces.
METRIC_DELAY_S: dict[str, float] = {"AWS/ApplicationELB": 60.0, "AWS/SQS": 60.0}
DEFAULT_METRIC_DELAY_S = 60.0


@dataclass(frozen=True)
class DetectionWindow:
    """The slowest alarm's worst-case time to fire, in CloudWatch seconds."""

    alarm: str
    period_s: float
    evaluation_periods: int
    datapoints_to_alarm: int
    metric_delay_s: float

    @property
    def seconds(self) -> float:
        return self.period_s * self.evaluation_periods + self.metric_delay_s

    def describe(self) -> str:
        return (f"{self.alarm}: {self.period_s:.0f} s x {self.evaluation_periods} periods "
                f"({self.datapoints_to_alarm} of {self.evaluation_periods} to alarm) + "
                f"{self.metric_delay_s:.0f} s metric delay = {self.seconds:.0f} s")


def _period_and_namespaces(alarm: dict[str, Any]) -> tuple[float, set[str]]:
    if alarm.get("Period"):
        return float(alarm["Period"]), {str(alarm.get("Namespace", ""))}
    stats = [q["MetricStat"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
    period = max((float(m["Period"]) for m in stats), default=60.0)
    return period, {str(m["Metric"].get("Namespace", "")) for m in stats}


def detection_window(alarm: dict[str, Any]) -> DetectionWindow:
    """One alarm's window, from its ``describe_alarms`` description."""
    period, namespaces = _period_and_namespaces(alarm)
    n = int(alarm.get("EvaluationPeriods") or 1)
    delay = max((METRIC_DELAY_S.get(ns, DEFAULT_METRIC_DELAY_S) for ns in namespaces),
                default=DEFAULT_METRIC_DELAY_S)
    return DetectionWindow(alarm["AlarmName"], period, n, int(alarm.get("DatapointsToAlarm") or n), delay)


def slowest_detection(cloudwatch: Any, names: list[str]) -> DetectionWindow | None:
    """The longest detection window among the alarms ``names``; None when the endpoint has no alarm."""
    if not names:
        return None
    alarms = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    windows = [detection_window(a) for a in alarms]
    return max(windows, key=lambda w: w.seconds, default=None)
