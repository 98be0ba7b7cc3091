"""GPU telemetry. No GPU exists on these machines: the "unavailable" test uses the real nvidia-ml-py
without a driver; the fault tests use a fake NVML module (GPU hardware cannot exist here) and a real
moto Auto Scaling group."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gpufleet.agent.serving.app import HealthState
from gpufleet.agent.serving.gpu import GpuTelemetry
from gpufleet.agent.serving.metrics import ServingMetrics, render_gpu
from gpufleet.agent.serving.telemetry import Telemetry
from tests.serving.conftest import Team


def test_without_nvml_telemetry_reports_unavailable_never_an_error() -> None:
    gpu = GpuTelemetry()
    reading = gpu.sample()
    assert reading["status"] == "unavailable" and reading["gpus"] == []
    assert "NVML" in reading["reason"] or "nvml" in reading["reason"].lower()
    lines = render_gpu(reading)
    assert "gpufleet_gpu_available 0.0" in lines
    assert any(line.startswith("gpufleet_gpu_status{") and 'status="unavailable"' in line for line in lines)


class FakeNvml:
    """Stands in for pynvml on a host with one GPU (no GPU hardware here)."""

    NVML_TEMPERATURE_GPU, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC = 0, 1, 0
    nvmlEventTypeXidCriticalError = 8

    class NVMLError(Exception):
        pass

    class NVMLError_GpuIsLost(NVMLError):
        pass

    def __init__(self) -> None:
        self.ecc = 0
        self.xid_events: list[int] = []
        self.lost = False

    def nvmlInit(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: return 1
    def nvmlDeviceGetHandleByIndex(self, i: int) -> str: return "gpu0"
    def nvmlDeviceGetUUID(self, h: str) -> str: return "GPU-fake-0"
    def nvmlDeviceGetPowerUsage(self, h: str) -> int: return 250_000
    def nvmlDeviceGetTemperature(self, h: str, kind: int) -> int: return 61
    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any: return SimpleNamespace(used=3 << 30, total=80 << 30)
    def nvmlEventSetCreate(self) -> str: return "events"
    def nvmlDeviceRegisterEvents(self, h: str, kinds: int, events: str) -> None: ...

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        if self.lost:
            raise self.NVMLError_GpuIsLost("GPU is lost")
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetTotalEccErrors(self, h: str, kind: int, counter: int) -> int:
        return self.ecc

    def nvmlEventSetWait_v2(self, events: str, timeout_ms: int) -> Any:
        if not self.xid_events:
            raise self.NVMLError("Timeout")
        return SimpleNamespace(device="gpu0", eventData=self.xid_events.pop(0))


def test_gpu_readings_reach_prometheus_and_cloudwatch(team: Team) -> None:
    gpu = GpuTelemetry(FakeNvml())
    metrics = ServingMetrics()
    metrics.request_done(200, 0.01)
    metrics.batch_done(1, 0.002)
    telemetry = Telemetry(team.client("cloudwatch"), team.client("autoscaling"), gpu, metrics, HealthState(),
                          {"Team": team.runtime.team, "Endpoint": "gpu", "Variant": "blue"}, "i-gpu")
    text = "\n".join(render_gpu(telemetry.poll_gpu()))
    for line in ('gpufleet_gpu_utilization_percent{gpu="0",uuid="GPU-fake-0"} 87.0',
                 'gpufleet_gpu_power_watts{gpu="0",uuid="GPU-fake-0"} 250.0',
                 'gpufleet_gpu_temperature_celsius{gpu="0",uuid="GPU-fake-0"} 61.0',
                 'gpufleet_gpu_ecc_uncorrected_errors{gpu="0",uuid="GPU-fake-0"} 0.0', "gpufleet_gpu_available 1.0"):
        assert line in text
    telemetry.publish()
    listed = team.client("cloudwatch").list_metrics(
        Namespace="gpufleet", Dimensions=[{"Name": "Team", "Value": team.runtime.team}])["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert {"GPUUtilization", "Invocations", "InvocationsPerInstance", "ModelLatency"} <= names


def _asg_instance(team: Team, name: str) -> str:
    ec2, asg = team.client("ec2"), team.client("autoscaling")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": ami,
                                                                           "InstanceType": "g5.xlarge"})
    asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=1, MaxSize=1, DesiredCapacity=1,
                                  LaunchTemplate={"LaunchTemplateName": name}, AvailabilityZones=["us-east-1a"])
    return str(asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
               ["AutoScalingGroups"][0]["Instances"][0]["InstanceId"])


def _health(team: Team, instance: str) -> str:
    described = team.client("autoscaling").describe_auto_scaling_instances(InstanceIds=[instance])
    return str(described["AutoScalingInstances"][0]["HealthStatus"]).upper()


def test_gpu_fault_marks_the_instance_unhealthy_in_its_asg_and_fails_ping(team: Team) -> None:
    instance = _asg_instance(team, f"{team.runtime.team}-serving-blue")
    nvml, health = FakeNvml(), HealthState()
    telemetry = Telemetry(team.client("cloudwatch"), team.client("autoscaling"), GpuTelemetry(nvml),
                          ServingMetrics(), health, {"Team": "t", "Endpoint": "e", "Variant": "blue"}, instance)
    nvml.xid_events.append(13)           # an application XID: not a hardware fault
    telemetry.poll_gpu()
    assert health.problem is None and _health(team, instance) == "HEALTHY"

    nvml.ecc = 2                          # uncorrectable ECC errors since start
    reading = telemetry.poll_gpu()
    assert reading["gpus"][0]["xid_errors"] == 1
    assert health.problem == "gpu fault: GPU 0: 2 new uncorrectable ECC errors"
    assert _health(team, instance) == "UNHEALTHY"


def test_fatal_xid_and_lost_gpu_are_faults() -> None:
    nvml = FakeNvml()
    gpu = GpuTelemetry(nvml)
    nvml.xid_events.append(79)
    assert gpu.sample()["fault"] == "GPU 0: XID 79"
    lost = FakeNvml()
    gpu = GpuTelemetry(lost)
    lost.lost = True
    assert gpu.sample()["fault"].startswith("GPU lost")
