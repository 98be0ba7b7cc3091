"""EndpointFleet: an ALB with blue/green target groups behind one weighted listener rule, an ASG per
variant with target tracking on requests per target, and the alarms rollouts watch.

Clients reach only the SageMaker paths (``/ping``, ``/invocations``): the listener's rule forwards those,
and its default action answers a fixed 404 for everything else (the agent's ``/metrics`` included).
With a certificate the listener is HTTPS and port 80 only redirects to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from constructs import Construct

from gpufleet.constructs.blocks import blocks
from gpufleet.constructs.launch import GpuLaunchTemplate
from gpufleet.constructs.policy import Grantee, Statement, sid
from gpufleet.constructs.suppress import skip_checks
from gpufleet.constructs.training import POLICY_IGNORED, asg_tags
from gpufleet.constructs.waf import RegionalWebAcl
from gpufleet.providers import (
    AutoscalingGroup,
    AutoscalingPolicy,
    CloudwatchMetricAlarm,
    Lb,
    LbListener,
    LbListenerRule,
    LbTargetGroup,
    SecurityGroup,
)

VARIANTS = ("blue", "green")
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
CLIENT_PATHS = ("/ping", "/invocations")   # the SageMaker serving contract; nothing else is exposed
NOT_FOUND = {"type": "fixed-response", "fixed_response": {
    "content_type": "text/plain", "message_body": "not found", "status_code": "404"}}


@dataclass(frozen=True)
class EndpointAlarms:
    error_rate_percent: float = 5.0
    p99_latency_s: float = 1.0


class EndpointFleet(Construct):
    """Front door in ``__init__`` (ALB, listener, target groups, alarms); capacity in ``add_variant``.

    Two phases because the hosts' user-data names the listener and target groups this creates.
    The forward rule's weights start all-blue; Terraform ignores later changes, since rollouts own them.
    ``client_cidrs`` defaults to the VPC; ``waf`` puts AWS managed rules in front of an internet-facing one.
    """

    def __init__(self, scope: Construct, fleet_id: str, *, name: str, target_group_names: Mapping[str, str],
                 vpc_id: str, vpc_cidr: str, subnet_ids: Sequence[str], internal: bool = True,
                 certificate_arn: str | None = None, client_cidrs: Sequence[str] = (), waf: bool = False,
                 serving_port: int = 8080, health_path: str = "/ping",
                 access_logs_bucket: str | None = None, alarm_topic_arn: str | None = None,
                 alarms: EndpointAlarms = EndpointAlarms(), tags: Mapping[str, str] | None = None) -> None:
        super().__init__(scope, fleet_id)
        if not internal and certificate_arn is None:
            raise ValueError(f"endpoint {name}: an internet-facing load balancer needs a certificate_arn (HTTPS only)")
        self.name, self.serving_port, self.subnet_ids = name, serving_port, list(subnet_ids)
        self.tags = dict(tags or {})
        self.alb_sg = self._alb_security_group(vpc_id, vpc_cidr, list(client_cidrs) or [vpc_cidr],
                                               certificate_arn is not None)
        self.host_sg = SecurityGroup(
            self, "host-sg", name=f"{name}-hosts", vpc_id=vpc_id, description=f"{name} serving hosts",
            ingress=blocks([{"description": "Inference traffic from the load balancer", "protocol": "tcp",
                      "from_port": serving_port, "to_port": serving_port, "security_groups": [self.alb_sg.id]}]),
            egress=blocks([{"description": "HTTPS to AWS APIs (S3 via the gateway endpoint)", "protocol": "tcp",
                     "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]))
        self.alb = Lb(self, "alb", name=name, internal=internal, load_balancer_type="application",
                      security_groups=[self.alb_sg.id], subnets=self.subnet_ids, drop_invalid_header_fields=True,
                      enable_deletion_protection=False, idle_timeout=120,
                      access_logs={"bucket": access_logs_bucket, "prefix": f"alb/{name}", "enabled": True}
                      if access_logs_bucket else None)
        skip_checks(self.alb, {"CKV_AWS_150": "deletion protection would make `gpufleet destroy` fail; "
                                              "the load balancer holds no data and is recreated from config"})
        if waf:
            RegionalWebAcl(self, "waf", name=name, resource_arn=self.alb.arn)
        else:
            reason = ("internal load balancer in private subnets: no WAF" if internal else
                      "internet-facing without WAF: the endpoint's waf setting is false (TLS and an allow-list "
                      "still apply)")
            skip_checks(self.alb, {"CKV2_AWS_28": reason, "CKV2_AWS_76": reason})
        self.target_groups = {v: self._target_group(v, target_group_names[v], vpc_id, health_path) for v in VARIANTS}
        self.listener = self._listener(certificate_arn)
        self.forward_rule = self._forward_rule()
        self.alb_dns: str = self.alb.dns_name
        self.listener_arn: str = self.listener.arn
        self.rule_arn: str = self.forward_rule.arn
        self.alarm_names: list[str] = []
        for v in VARIANTS:
            self._alarms(v, alarms, alarm_topic_arn)
        self.asgs: dict[str, AutoscalingGroup] = {}
        self.asg_arn_patterns: list[str] = []

    def _alb_security_group(self, vpc_id: str, vpc_cidr: str, sources: list[str], tls: bool) -> SecurityGroup:
        ingress = [{"description": "Clients", "protocol": "tcp", "from_port": 443 if tls else 80,
                    "to_port": 443 if tls else 80, "cidr_blocks": sources}]
        if tls:
            ingress.append({"description": "Clients, redirected to HTTPS", "protocol": "tcp", "from_port": 80,
                            "to_port": 80, "cidr_blocks": sources})
        sg = SecurityGroup(
            self, "alb-sg", name=f"{self.name}-alb", vpc_id=vpc_id, description=f"{self.name} load balancer",
            ingress=blocks(ingress),
            egress=blocks([{"description": "Serving hosts", "protocol": "tcp", "from_port": self.serving_port,
                     "to_port": self.serving_port, "cidr_blocks": [vpc_cidr]}]))
        if "0.0.0.0/0" in sources:
            skip_checks(sg, {"CKV_AWS_260": "declared public (the endpoint's public: true): port 80 only "
                                            "redirects to HTTPS"})
        return sg

    def _target_group(self, variant: str, tg_name: str, vpc_id: str, health_path: str) -> LbTargetGroup:
        tg = LbTargetGroup(
            self, f"tg-{variant}", name=tg_name, port=self.serving_port, protocol="HTTP", vpc_id=vpc_id,
            target_type="instance", deregistration_delay="30",
            health_check={"enabled": True, "path": health_path, "matcher": "200", "interval": 15,
                          "timeout": 5, "healthy_threshold": 2, "unhealthy_threshold": 3, "protocol": "HTTP"},
            tags={"gpufleet:variant": variant})
        skip_checks(tg, {"CKV_AWS_378": "TLS ends at the load balancer; hosts sit in private subnets"})
        return tg

    def _listener(self, certificate_arn: str | None) -> LbListener:
        tls = certificate_arn is not None
        listener = LbListener(self, "listener", load_balancer_arn=self.alb.arn, port=443 if tls else 80,
                              protocol="HTTPS" if tls else "HTTP", default_action=blocks([NOT_FOUND]),
                              certificate_arn=certificate_arn, ssl_policy=TLS_POLICY if tls else None)
        if tls:
            LbListener(self, "http-redirect", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                       default_action=blocks([{"type": "redirect", "redirect": {
                           "port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}]))
        else:
            # Config validation refuses an internet-facing endpoint without a certificate.
            reason = "no certificate_arn configured for this internal endpoint; set one to serve HTTPS"
            skip_checks(listener, {"CKV_AWS_2": reason, "CKV_AWS_103": reason})
            skip_checks(self.alb, {"CKV2_AWS_20": reason})
        return listener

    def _forward_rule(self) -> LbListenerRule:
        forward = {"type": "forward", "forward": {"target_group": [
            {"arn": self.target_groups["blue"].arn, "weight": 100},
            {"arn": self.target_groups["green"].arn, "weight": 0}]}}
        return LbListenerRule(self, "forward", listener_arn=self.listener.arn, priority=10,
                              action=blocks([forward]),
                              condition=blocks([{"path_pattern": {"values": list(CLIENT_PATHS)}}]),
                              lifecycle={"ignore_changes": ["action"]})

    def _alarms(self, variant: str, limits: EndpointAlarms, topic_arn: str | None) -> None:
        dims = {"LoadBalancer": self.alb.arn_suffix, "TargetGroup": self.target_groups[variant].arn_suffix}
        actions = [topic_arn] if topic_arn else []
        errors = CloudwatchMetricAlarm(
            self, f"{variant}-5xx", alarm_name=f"{self.name}-{variant}-5xx-rate", threshold=limits.error_rate_percent,
            comparison_operator="GreaterThanThreshold", evaluation_periods=3, datapoints_to_alarm=2,
            treat_missing_data="notBreaching", alarm_actions=actions,
            alarm_description=f"{self.name} {variant}: share of requests failing with 5xx (%)",
            metric_query=blocks([
                {"id": "errors", "metric": {"namespace": "AWS/ApplicationELB", "dimensions": dims, "period": 60,
                                            "metric_name": "HTTPCode_Target_5XX_Count", "stat": "Sum"}},
                {"id": "requests", "metric": {"namespace": "AWS/ApplicationELB", "metric_name": "RequestCount",
                                              "dimensions": dims, "period": 60, "stat": "Sum"}},
                {"id": "rate", "expression": "100 * errors / MAX([requests, 1])", "label": "5xx %",
                 "return_data": True}]))
        latency = CloudwatchMetricAlarm(
            self, f"{variant}-p99", alarm_name=f"{self.name}-{variant}-p99-latency", namespace="AWS/ApplicationELB",
            metric_name="TargetResponseTime", dimensions=dims, extended_statistic="p99", period=60,
            evaluation_periods=3, datapoints_to_alarm=2, threshold=limits.p99_latency_s,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", alarm_actions=actions,
            alarm_description=f"{self.name} {variant}: p99 latency (s)")
        self.alarm_names += [errors.alarm_name, latency.alarm_name]

    def add_variant(self, variant: str, *, asg_name: str, launch_template: GpuLaunchTemplate, min_instances: int,
                    max_instances: int, target_requests: int, asg_arn_prefix: str) -> AutoscalingGroup:
        """``asg_arn_prefix`` is ``arn:<partition>:autoscaling:<region>:<account>`` (for grants)."""
        tg = self.target_groups[variant]
        asg = AutoscalingGroup(
            self, f"asg-{variant}", name=asg_name, min_size=min_instances, max_size=max_instances,
            vpc_zone_identifier=self.subnet_ids, target_group_arns=[tg.arn], health_check_type="ELB",
            health_check_grace_period=600, launch_template={"id": launch_template.id,
                                                            "version": launch_template.latest_version},
            tag=blocks(asg_tags({**self.tags, "gpufleet:variant": variant})),
            # Scaling and rollouts own the size: a rollout scales the retired colour to zero (min 0).
            lifecycle={"ignore_changes": ["desired_capacity", "min_size"]})
        AutoscalingPolicy(self, f"track-{variant}", name=f"{asg_name}-requests-per-target",
                          autoscaling_group_name=asg_name, lifecycle={"ignore_changes": POLICY_IGNORED},
                          policy_type="TargetTrackingScaling", depends_on=[asg], target_tracking_configuration={
                              "predefined_metric_specification": {
                                  "predefined_metric_type": "ALBRequestCountPerTarget",
                                  "resource_label": f"{self.alb.arn_suffix}/{tg.arn_suffix}"},
                              "target_value": target_requests})
        self.asgs[variant] = asg
        self.asg_arn_patterns.append(f"{asg_arn_prefix}:autoScalingGroup:*:autoScalingGroupName/{asg_name}")
        return asg

    def grant_scale(self, grantee: Grantee, label: str) -> None:
        """Resize the variants' ASGs (rollouts warm up green before shifting traffic)."""
        grantee.add_to_policy(Statement(sid("Scale", label), (
            "autoscaling:SetDesiredCapacity", "autoscaling:UpdateAutoScalingGroup"), tuple(self.asg_arn_patterns)))

    def grant_report_health(self, grantee: Grantee, label: str) -> None:
        """Mark a host of the variants' ASGs unhealthy (a serving agent on a GPU fault), so it is replaced."""
        grantee.add_to_policy(Statement(sid("ReportHealth", label), ("autoscaling:SetInstanceHealth",),
                                        tuple(self.asg_arn_patterns)))

    def grant_shift_traffic(self, grantee: Grantee, label: str) -> None:
        """Change the forward rule's weights (rollouts)."""
        grantee.add_to_policy(Statement(sid("ShiftTraffic", label), ("elasticloadbalancing:ModifyRule",),
                                        (self.rule_arn,)))
