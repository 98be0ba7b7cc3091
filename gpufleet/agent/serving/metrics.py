"""Serving metrics: counters and histograms cheap enough for the hot path, rendered as Prometheus text.

prometheus_client is not used: a plain int increment and a ``bisect`` cost well under a microsecond,
and the agent has no other need for the dependency. CloudWatch gets per-window deltas from here.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, labels: str = "") -> list[str]:
        lines, running = [], 0
        sep = "," if labels else ""
        for bound, n in zip((*self.bounds, "+Inf"), self.counts, strict=True):
            running += n
            lines.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        lb = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{lb} {self.total}", f"{name}_count{lb} {self.count}"]
        return lines


@dataclass
class Window:
    """What CloudWatch gets each period: invocations and model latency statistics (microseconds)."""

    invocations: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum_us: float = 0.0
    latency_min_us: float = float("inf")
    latency_max_us: float = 0.0


@dataclass
class ServingMetrics:
    requests: dict[int, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    model_latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    model_loads: int = 0
    model_load_failures: int = 0
    window: Window = field(default_factory=Window)
    lock: threading.Lock = field(default_factory=threading.Lock)  # only for swapping the window

    def request_done(self, status: int, seconds: float) -> None:
        self.requests[status] = self.requests.get(status, 0) + 1
        self.latency.observe(seconds)
        window = self.window
        window.invocations += 1
        if status >= 500:
            window.errors += 1

    def batch_done(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_latency.observe(seconds)
        window, micros = self.window, seconds * 1e6
        window.latency_count += 1
        window.latency_sum_us += micros
        window.latency_min_us = min(window.latency_min_us, micros)
        window.latency_max_us = max(window.latency_max_us, micros)

    def take_window(self) -> Window:
        with self.lock:
            window, self.window = self.window, Window()
        return window

    def render(self, model: tuple[str, int] | None, gpu: dict[str, Any], extra: dict[str, float]) -> bytes:
        lines = ["# TYPE gpufleet_requests_total counter"]
        lines += [f'gpufleet_requests_total{{code="{c}"}} {n}' for c, n in sorted(self.requests.items())]
        lines.append("# TYPE gpufleet_request_latency_seconds histogram")
        lines += self.latency.render("gpufleet_request_latency_seconds")
        lines.append("# TYPE gpufleet_model_latency_seconds histogram")
        lines += self.model_latency.render("gpufleet_model_latency_seconds")
        lines.append("# TYPE gpufleet_batch_size histogram")
        lines += self.batch_size.render("gpufleet_batch_size")
        lines += ["# TYPE gpufleet_model_loads_total counter",
                  f"gpufleet_model_loads_total {self.model_loads}",
                  "# TYPE gpufleet_model_load_failures_total counter",
                  f"gpufleet_model_load_failures_total {self.model_load_failures}",
                  "# TYPE gpufleet_model_info gauge"]
        if model:
            lines.append(f'gpufleet_model_info{{model="{_escape(model[0])}",version="{model[1]}"}} 1')
        lines += [f"{name} {value}" for name, value in sorted(extra.items())]
        lines += render_gpu(gpu)
        return ("\n".join(lines) + "\n").encode()


GPU_GAUGES = (("utilization_percent", "utilization"), ("memory_used_bytes", "memory_used"),
              ("memory_total_bytes", "memory_total"), ("temperature_celsius", "temperature"),
              ("power_watts", "power"), ("ecc_uncorrected_errors", "ecc_uncorrected"),
              ("xid_errors_total", "xid_errors"))


def render_gpu(gpu: dict[str, Any]) -> list[str]:
    """Per-GPU gauges, or ``gpufleet_gpu_available 0`` with the reason: never an error."""
    status = gpu.get("status", "unavailable")
    lines = ["# TYPE gpufleet_gpu_available gauge",
             f"gpufleet_gpu_available {1 if status == 'available' else 0}",
             f'gpufleet_gpu_status{{status="{status}",reason="{_escape(gpu.get("reason", ""))}"}} 1']
    for name, key in GPU_GAUGES:
        for dev in gpu.get("gpus", []):
            if dev.get(key) is not None:
                lines.append(f'gpufleet_gpu_{name}{{gpu="{dev["index"]}",uuid="{dev["uuid"]}"}} {dev[key]}')
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
