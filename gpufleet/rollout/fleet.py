"""What a rollout reads and moves on AWS: the forward rule's weights, variant capacity, target health, alarms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpufleet.schema import VARIANTS, Variant
from gpufleet.schema.runtime import EndpointRuntime

# (healthy, registered) targets of a variant. AWS: the ALB's /ping health checks; local: the router's.
TargetHealth = Callable[[Variant], tuple[int, int]]


def read_weights(elbv2: Any, ep: EndpointRuntime) -> dict[Variant, int]:
    rule = elbv2.describe_rules(RuleArns=[ep.rule_arn])["Rules"][0]
    by_arn = {getattr(ep.target_groups, v): v for v in VARIANTS}
    weights: dict[Variant, int] = {"blue": 0, "green": 0}
    for action in rule.get("Actions", []):
        groups = action.get("ForwardConfig", {}).get("TargetGroups") or (
            [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}] if action.get("TargetGroupArn") else [])
        total = sum(int(g.get("Weight", 1)) for g in groups) or 1
        for g in groups:
            if g["TargetGroupArn"] in by_arn:
                weights[by_arn[g["TargetGroupArn"]]] = round(100 * int(g.get("Weight", 1)) / total)
    return weights


def forwarded_paths(elbv2: Any, ep: EndpointRuntime) -> list[str]:
    """The path patterns the forward rule matches; the listener answers 404 to every other path."""
    rule = elbv2.describe_rules(RuleArns=[ep.rule_arn])["Rules"][0]
    return [v for c in rule.get("Conditions", []) if c.get("Field") == "path-pattern"
            for v in c.get("PathPatternConfig", {}).get("Values") or c.get("Values", [])]


def set_weights(elbv2: Any, ep: EndpointRuntime, weights: dict[Variant, int]) -> None:
    """Forward to both target groups with these weights (the stacks tell Terraform to ignore them)."""
    groups = [{"TargetGroupArn": getattr(ep.target_groups, v), "Weight": weights[v]} for v in VARIANTS]
    elbv2.modify_rule(RuleArn=ep.rule_arn, Actions=[{
        "Type": "forward", "ForwardConfig": {"TargetGroups": groups,
                                             "TargetGroupStickinessConfig": {"Enabled": False}}}])


def desired_capacity(autoscaling: Any, asg: str) -> tuple[int, int, int]:
    """(desired, min, max) of an ASG."""
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])["AutoScalingGroups"][0]
    return int(group["DesiredCapacity"]), int(group["MinSize"]), int(group["MaxSize"])


def scale(autoscaling: Any, asg: str, capacity: int) -> None:
    """Set the ASG's desired capacity, lowering its minimum when scaling an idle variant to zero."""
    _, min_size, max_size = desired_capacity(autoscaling, asg)
    capacity = min(capacity, max_size)
    if capacity < min_size:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=asg, MinSize=capacity,
                                              DesiredCapacity=capacity)
    else:
        autoscaling.set_desired_capacity(AutoScalingGroupName=asg, DesiredCapacity=capacity, HonorCooldown=False)


def firing_alarms(cloudwatch: Any, names: list[str]) -> list[str]:
    if not names:
        return []
    alarms = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    return [a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM"]


def elb_target_health(elbv2: Any, ep: EndpointRuntime) -> TargetHealth:
    """Real AWS: the ALB's own health checks on ``/ping``."""

    def health(variant: Variant) -> tuple[int, int]:
        targets = elbv2.describe_target_health(
            TargetGroupArn=getattr(ep.target_groups, variant))["TargetHealthDescriptions"]
        healthy = sum(1 for t in targets if t["TargetHealth"]["State"] == "healthy")
        return healthy, len(targets)

    return health
