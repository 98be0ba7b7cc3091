"""GpuTrainingFleet: a mixed-instances spot ASG that scales from zero on queue backlog and back to zero
when idle, with a termination lifecycle hook so the agent can checkpoint first."""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from gpufleet.constructs.blocks import blocks
from gpufleet.constructs.launch import GpuLaunchTemplate
from gpufleet.constructs.policy import Grantee, Statement, sid
from gpufleet.providers import AutoscalingGroup, AutoscalingLifecycleHook, AutoscalingPolicy, CloudwatchMetricAlarm
from gpufleet.schema import CHECKPOINT_HOOK_SUFFIX

# The agent completes the checkpoint hook after its drain and protects its host from scale-in while a
# job runs. No RecordLifecycleActionHeartbeat: the drain (stop_grace_s plus a final sync) fits in the
# hook's timeout, and the hook's default result CONTINUE ends it anyway.
LIFECYCLE_ACTIONS = ("autoscaling:CompleteLifecycleAction", "autoscaling:SetInstanceProtection")
# Hook and policy names start with the ASG name: AWS scopes them per ASG, moto per account.
# moto invents a notification target and role for hooks and reports policies as disabled; neither
# is set by gpufleet, so Terraform leaves them alone.
HOOK_IGNORED = ["notification_target_arn", "role_arn"]
POLICY_IGNORED = ["enabled", "predictive_scaling_configuration"]


def asg_tags(tags: dict[str, str]) -> list[dict[str, object]]:
    return [{"key": k, "value": v, "propagate_at_launch": True} for k, v in sorted(tags.items())]


class GpuTrainingFleet(Construct):
    """``instance_types`` first is preferred; ``spot_percentage`` applies above ``on_demand_base``.

    ``queue_name`` is the SQS queue whose backlog starts hosts; ``idle_minutes`` of an empty queue (nothing
    visible or in flight) stops them all. ``asg_arn_pattern`` is this ASG's ARN with a wildcard for the id
    AWS assigns, used for grants.
    """

    def __init__(self, scope: Construct, fleet_id: str, *, name: str, launch_template: GpuLaunchTemplate,
                 subnet_ids: Sequence[str], instance_types: Sequence[str], on_demand_base: int,
                 spot_percentage: int, max_instances: int, queue_name: str,
                 asg_arn_prefix: str, tags: dict[str, str], idle_minutes: int = 15,
                 checkpoint_timeout_s: int = 300) -> None:
        super().__init__(scope, fleet_id)
        self.asg = AutoscalingGroup(
            self, "asg", name=name, min_size=0, max_size=max_instances, vpc_zone_identifier=list(subnet_ids),
            capacity_rebalance=True, health_check_type="EC2", default_cooldown=120,
            mixed_instances_policy=blocks({
                "instances_distribution": {
                    "on_demand_base_capacity": on_demand_base,
                    "on_demand_percentage_above_base_capacity": 100 - spot_percentage,
                    "spot_allocation_strategy": "capacity-optimized"},
                "launch_template": {
                    "launch_template_specification": {"launch_template_id": launch_template.id,
                                                      "version": launch_template.latest_version},
                    "override": [{"instance_type": t} for t in instance_types]}}),
            tag=blocks(asg_tags(tags)), lifecycle={"ignore_changes": ["desired_capacity"]})
        self.name: str = name
        self.asg_arn_pattern = f"{asg_arn_prefix}:autoScalingGroup:*:autoScalingGroupName/{name}"
        self.checkpoint_hook = f"{name}{CHECKPOINT_HOOK_SUFFIX}"
        AutoscalingLifecycleHook(self, "checkpoint-hook", name=self.checkpoint_hook,
                                 autoscaling_group_name=name,
                                 lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
                                 heartbeat_timeout=checkpoint_timeout_s, default_result="CONTINUE",
                                 depends_on=[self.asg], lifecycle={"ignore_changes": HOOK_IGNORED})
        self._scaling(queue_name, idle_minutes)

    def _scaling(self, queue: str, idle_minutes: int) -> None:
        out = AutoscalingPolicy(self, "scale-out", name=f"{self.name}-scale-out-on-backlog",
                                autoscaling_group_name=self.name,
                                policy_type="StepScaling", adjustment_type="ChangeInCapacity",
                                step_adjustment=blocks([{"metric_interval_lower_bound": "0", "scaling_adjustment": 1}]),
                                depends_on=[self.asg], lifecycle={"ignore_changes": POLICY_IGNORED})
        idle = AutoscalingPolicy(self, "scale-in", name=f"{self.name}-scale-to-zero",
                                 autoscaling_group_name=self.name,
                                 policy_type="StepScaling", adjustment_type="ExactCapacity",
                                 step_adjustment=blocks([{"metric_interval_upper_bound": "0",
                                                          "scaling_adjustment": 0}]),
                                 depends_on=[self.asg], lifecycle={"ignore_changes": POLICY_IGNORED})
        dims = {"QueueName": queue}
        self.backlog_alarm = CloudwatchMetricAlarm(
            self, "backlog", alarm_name=f"{self.name}-backlog", namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible", dimensions=dims, statistic="Maximum",
            period=60, evaluation_periods=1, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
            alarm_actions=[out.arn], treat_missing_data="notBreaching",
            alarm_description="Jobs are waiting: add a training host")
        self.idle_alarm = CloudwatchMetricAlarm(
            self, "idle", alarm_name=f"{self.name}-idle", comparison_operator="LessThanOrEqualToThreshold",
            threshold=0, evaluation_periods=idle_minutes, alarm_actions=[idle.arn],
            treat_missing_data="breaching", alarm_description="No job queued or running: stop all hosts",
            metric_query=blocks([
                {"id": "visible", "metric": {"namespace": "AWS/SQS", "dimensions": dims, "period": 60,
                                             "metric_name": "ApproximateNumberOfMessagesVisible", "stat": "Maximum"}},
                {"id": "inflight", "metric": {"namespace": "AWS/SQS",
                                              "metric_name": "ApproximateNumberOfMessagesNotVisible",
                                              "dimensions": dims, "period": 60, "stat": "Maximum"}},
                {"id": "work", "expression": "visible + inflight", "label": "queued or running",
                 "return_data": True}]))

    def grant_lifecycle(self, grantee: Grantee, label: str) -> None:
        """Let the host agent complete the checkpoint hook, and protect itself from scale-in while busy."""
        grantee.add_to_policy(Statement(sid("Lifecycle", label), LIFECYCLE_ACTIONS, (self.asg_arn_pattern,)))

    def grant_scale(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("Scale", label), ("autoscaling:SetDesiredCapacity",),
                                        (self.asg_arn_pattern,)))
