"""Test support: an endpoint's ALB, blue/green target groups, a listener (404 by default) with a weighted
rule for /ping and /invocations, ASGs and 5xx alarm, created straight in the emulator with boto3 (the team
stack makes the same on a real deploy; this skips Terraform's minute of ALB waits), and small model
artifacts registered in the team's registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from typing import Any

from gpufleet.local.emulator import Emulator
from gpufleet.schema.runtime import TeamRuntime
from tests.support.aws import client

ERROR_RATE_THRESHOLD = 5.0   # percent of requests answered 5xx in a period


def create_endpoint_resources(emu: Emulator, rt: TeamRuntime, endpoint: str, blue_capacity: int = 1,
                              alarm_period_s: int = 60, image: str | None = None) -> TeamRuntime:
    """The alarm has the team stack's timing: 2 of 3 one-minute periods (5 s each on the local time scale)."""
    """The endpoint fleet for ``endpoint``; returns the runtime config with it added."""
    prefix = f"{rt.platform}-{rt.team}-{endpoint}"
    ec2, elbv2 = client(emu, "ec2", rt.region), client(emu, "elbv2", rt.region)
    vpc = ec2.create_vpc(CidrBlock="10.70.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.70.{i}.0/24",
                                 AvailabilityZone=f"{rt.region}{'ab'[i]}")["Subnet"]["SubnetId"] for i in range(2)]
    lb = elbv2.create_load_balancer(Name=prefix, Subnets=subnets, Scheme="internal",
                                    Type="application")["LoadBalancers"][0]
    tgs = {v: elbv2.create_target_group(Name=f"{prefix}-{v}", Protocol="HTTP", Port=8080, VpcId=vpc,
                                        HealthCheckPath="/ping")["TargetGroups"][0]["TargetGroupArn"]
           for v in ("blue", "green")}
    listener = elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=[
        {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"}}],
    )["Listeners"][0]["ListenerArn"]
    rule = elbv2.create_rule(ListenerArn=listener, Priority=10, Conditions=[
        {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/ping", "/invocations"]}}], Actions=[
        {"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": tgs["blue"], "Weight": 100},
                                                               {"TargetGroupArn": tgs["green"], "Weight": 0}]}}],
    )["Rules"][0]["RuleArn"]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName=prefix, LaunchTemplateData={"ImageId": ami,
                                                                              "InstanceType": "g5.xlarge"})
    asgs = {}
    for v, capacity in (("blue", blue_capacity), ("green", 0)):
        asgs[v] = f"{prefix}-{v}"
        client(emu, "autoscaling", rt.region).create_auto_scaling_group(
            AutoScalingGroupName=asgs[v], LaunchTemplate={"LaunchTemplateName": prefix}, MinSize=0, MaxSize=2,
            DesiredCapacity=capacity, VPCZoneIdentifier=",".join(subnets))
    alarm = f"{prefix}-green-5xx-rate"   # named as the team stack names the canary variant's alarm
    lb_dim = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
    metric = {"Namespace": "AWS/ApplicationELB", "Dimensions": [{"Name": "LoadBalancer", "Value": lb_dim}]}
    client(emu, "cloudwatch", rt.region).put_metric_alarm(
        AlarmName=alarm, EvaluationPeriods=3, DatapointsToAlarm=2, Threshold=ERROR_RATE_THRESHOLD,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching", Metrics=[
            {"Id": "errors", "ReturnData": False, "MetricStat": {"Metric": {**metric, "MetricName":
                                                                             "HTTPCode_Target_5XX_Count"},
                                                                 "Period": alarm_period_s, "Stat": "Sum"}},
            {"Id": "requests", "ReturnData": False, "MetricStat": {"Metric": {**metric, "MetricName": "RequestCount"},
                                                                   "Period": alarm_period_s, "Stat": "Sum"}},
            {"Id": "rate", "Expression": "IF(requests > 0, 100 * FILL(errors, 0) / requests, 0)", "ReturnData": True}])
    doc = rt.model_dump()
    doc["endpoints"][endpoint] = {"alb_dns": lb["DNSName"], "listener_arn": listener, "rule_arn": rule,
                                  "target_groups": tgs,
                                  "asgs": asgs, "alarms": [alarm], "image": image}
    return TeamRuntime.model_validate(doc)


HANDLER = '''
import json

def model_fn(model_dir):
    with open(model_dir + "/weights.json") as f:
        return json.load(f)

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if model["fail"]:
        raise RuntimeError("this model is deliberately broken")
    return [sum(row) * model["scale"] for row in data]

def output_fn(prediction, accept):
    return json.dumps(prediction)
'''


def model_tarball(scale: float, fail: bool) -> bytes:
    """A SageMaker-style model: ``code/inference.py`` and its weights; ``fail`` makes every prediction raise."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("code/inference.py", HANDLER.encode()),
                           ("weights.json", json.dumps({"scale": scale, "fail": fail}).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def register_model(emu: Emulator, rt: TeamRuntime, name: str, version: int, tarball: bytes,
                   status: str = "Approved") -> dict[str, Any]:
    """Upload an artifact and put its registry item, as the training agent and `model approve` would."""
    key = f"models/{name}/{version}/model.tar.gz"
    client(emu, "s3", rt.region).put_object(Bucket=rt.buckets.artifacts, Key=key, Body=tarball)
    item = {"model_name": {"S": name}, "version": {"N": str(version)}, "status": {"S": status},
            "artifact_uri": {"S": f"s3://{rt.buckets.artifacts}/{key}"},
            "sha256": {"S": hashlib.sha256(tarball).hexdigest()}, "created_at": {"S": time.strftime("%FT%TZ")}}
    client(emu, "dynamodb", rt.region).put_item(TableName=rt.tables.models, Item=item)
    if status != "PendingManualApproval":   # the operator's decision, pinned to this artifact
        client(emu, "dynamodb", rt.region).put_item(TableName=rt.tables.approvals, Item={
            k: item[k] for k in ("model_name", "version", "status", "artifact_uri", "sha256")})
    return item
