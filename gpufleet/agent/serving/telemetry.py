"""The agent's telemetry loop: GPU readings, CloudWatch custom metrics, and the GPU-fault health signal.

CloudWatch gets, in namespace ``gpufleet``:
- per instance (Team, Endpoint, Variant, InstanceId): Invocations, Invocation5XXErrors, ModelLatency
  (microseconds, per batch) and GPUUtilization;
- per variant (Team, Endpoint, Variant): InvocationsPerInstance, whose Average over instances is what a
  target-tracking policy scales on, and ModelLatency for rollout alarms.
"""

from __future__ import annotations

import threading
from typing import Any

from gpufleet.agent.serving.app import HealthState
from gpufleet.agent.serving.events import emit
from gpufleet.agent.serving.gpu import GpuTelemetry
from gpufleet.agent.serving.metrics import ServingMetrics, Window
from gpufleet.schema import METRIC_NAMESPACE


class Telemetry:
    def __init__(self, cloudwatch: Any, autoscaling: Any, gpu: GpuTelemetry, metrics: ServingMetrics,
                 health: HealthState, dims: dict[str, str], instance_id: str) -> None:
        self.cloudwatch, self.autoscaling, self.gpu = cloudwatch, autoscaling, gpu
        self.metrics, self.health = metrics, health
        self.variant_dims = [{"Name": k, "Value": v} for k, v in dims.items()]
        self.instance_dims = [*self.variant_dims, {"Name": "InstanceId", "Value": instance_id}]
        self.instance_id = instance_id
        self.last_gpu: dict[str, Any] = gpu.sample()
        self.reported_fault = False
        self.unsent: Window | None = None   # a window CloudWatch did not take (see ``publish``)

    def poll_gpu(self) -> dict[str, Any]:
        self.last_gpu = self.gpu.sample()
        fault = self.last_gpu.get("fault")
        if fault and not self.reported_fault:
            self.report_fault(fault)
        return self.last_gpu

    def report_fault(self, fault: str) -> None:
        """Fail /ping and tell the ASG to replace this instance (once)."""
        self.reported_fault = True
        self.health.fail(f"gpu fault: {fault}")
        emit("gpu_fault", fault=fault, instance_id=self.instance_id)
        try:
            self.autoscaling.set_instance_health(InstanceId=self.instance_id, HealthStatus="Unhealthy",
                                                 ShouldRespectGracePeriod=False)
        except Exception as exc:   # the ALB health check still fails on /ping; keep trying next poll
            self.reported_fault = False
            emit("set_instance_health_failed", error=f"{type(exc).__name__}: {exc}")

    def publish(self) -> None:
        """Send the window's datapoints. When CloudWatch is unreachable or throttles past botocore's retries,
        the window is kept and goes out with the next one, so no invocation goes uncounted (its datapoints
        land in a later minute). Serving never waits on this."""
        window = self.metrics.take_window()
        if self.unsent is not None:
            window = self.unsent.merged(window)
        try:
            self.cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=self._datums(window))
        except Exception as exc:
            self.unsent = window
            emit("put_metric_data_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            self.unsent = None

    def _datums(self, window: Window) -> list[dict[str, Any]]:
        datums: list[dict[str, Any]] = [
            {"MetricName": "Invocations", "Dimensions": self.instance_dims, "Unit": "Count",
             "Value": window.invocations},
            {"MetricName": "Invocation5XXErrors", "Dimensions": self.instance_dims, "Unit": "Count",
             "Value": window.errors},
            {"MetricName": "InvocationsPerInstance", "Dimensions": self.variant_dims, "Unit": "Count",
             "Value": window.invocations},
        ]
        if window.latency_count:
            stats = {"SampleCount": window.latency_count, "Sum": window.latency_sum_us,
                     "Minimum": window.latency_min_us, "Maximum": window.latency_max_us}
            datums += [{"MetricName": "ModelLatency", "Dimensions": dims, "Unit": "Microseconds",
                        "StatisticValues": stats} for dims in (self.instance_dims, self.variant_dims)]
        gpus = self.last_gpu.get("gpus", [])
        utilizations = [g["utilization"] for g in gpus if g.get("utilization") is not None]
        if utilizations:
            datums.append({"MetricName": "GPUUtilization", "Dimensions": self.instance_dims,
                           "Unit": "Percent", "Value": sum(utilizations) / len(utilizations)})
        return datums

    def run(self, stop: threading.Event, gpu_interval_s: float, publish_interval_s: float) -> None:
        waited = 0.0
        step = min(gpu_interval_s, publish_interval_s)
        while not stop.wait(step):
            self.poll_gpu()
            waited += step
            if waited >= publish_interval_s:
                self.publish()
                waited = 0.0
