"""Serving metrics: prometheus_client counters and histograms for ``/metrics``, per-window sums for CloudWatch.

prometheus_client replaced a hand-written text rendering after a measurement (issue 14: keep the hand-written
one only if the library costs more than 3 % at tiny-model c=64 on ``scripts/bench-serving``). Its hot path
(a labelled counter and three histogram observations per request) costs 1.9 us more CPU per request than
plain ints and ``bisect`` (0.7 us vs 2.6 us; in-process, median of 25 paired trials): 2.0 % of the agent's
95 us of CPU per request at tiny-model c=64 unbatched on the bench. The bench's own A/B of the two (paired
rounds on a 2-core machine at load averages of 13-20, with CPU per request swinging by +-50 % between
rounds) put it at 1 %, 3-4 % and 22 % in three runs: within noise, so the in-process figure decides.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()   # no ``*_created`` series: the agent's start time is in its logs

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class Window:
    """What CloudWatch gets each period: invocations and model latency statistics (microseconds)."""

    invocations: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum_us: float = 0.0
    latency_min_us: float = float("inf")
    latency_max_us: float = 0.0

    def merged(self, later: Window) -> Window:
        """This window and a later one as one (a window CloudWatch did not take goes out with the next)."""
        return Window(self.invocations + later.invocations, self.errors + later.errors,
                      self.latency_count + later.latency_count, self.latency_sum_us + later.latency_sum_us,
                      min(self.latency_min_us, later.latency_min_us), max(self.latency_max_us, later.latency_max_us))


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter("gpufleet_requests", "Requests answered, by HTTP status", ["code"],
                                 registry=registry)
        self._by_status: dict[int, Any] = {}    # bound children: labels() costs a lock and a dict lookup
        self.latency = Histogram("gpufleet_request_latency_seconds", "Request arrival to response sent",
                                 buckets=LATENCY_BUCKETS_S, registry=registry)
        self.model_latency = Histogram("gpufleet_model_latency_seconds", "Seconds in predict_fn per batch",
                                       buckets=LATENCY_BUCKETS_S, registry=registry)
        self.batch_size = Histogram("gpufleet_batch_size", "Requests per predict_fn call",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.model_loads = Counter("gpufleet_model_loads", "Models loaded and swapped in", registry=registry)
        self.model_load_failures = Counter("gpufleet_model_load_failures", "Models refused (artifact, load "
                                           "or warm-up failed)", registry=registry)
        self.window = Window()
        self.lock = threading.Lock()   # only for swapping the window

    def request_done(self, status: int, seconds: float) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._requests.labels(str(status))
        counter.inc()
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

    def sample(self, name: str) -> float:
        """One sample's value, e.g. ``gpufleet_batch_size_count``; 0 when it has none yet."""
        return self.registry.get_sample_value(name) or 0.0

    def served(self) -> int:
        return int(self.sample("gpufleet_request_latency_seconds_count"))

    def take_window(self) -> Window:
        with self.lock:
            window, self.window = self.window, Window()
        return window

    def render(self, model: tuple[str, int] | None, gpu: dict[str, Any], extra: dict[str, float]) -> bytes:
        """The Prometheus text: the registry's metrics, then this scrape's state (model, ``extra``, GPU)."""
        return generate_latest(self.registry) + generate_latest(_Snapshot(model, gpu, extra))


GPU_GAUGES = (("utilization_percent", "utilization"), ("memory_used_bytes", "memory_used"),
              ("memory_total_bytes", "memory_total"), ("temperature_celsius", "temperature"),
              ("power_watts", "power"), ("ecc_uncorrected_errors", "ecc_uncorrected"),
              ("xid_errors_total", "xid_errors"))


class _Snapshot(Collector):
    """A collector for what is read at scrape time: the model being served, ``extra`` gauges (a name
    ending in ``_total`` is a counter) and the GPU reading."""

    def __init__(self, model: tuple[str, int] | None, gpu: dict[str, Any], extra: dict[str, float]) -> None:
        self.model, self.gpu, self.extra = model, gpu, extra

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("gpufleet_model_info", "The model version being served",
                                 labels=["model", "version"])
        if self.model:
            info.add_metric([self.model[0], str(self.model[1])], 1)
        yield info
        for name, value in sorted(self.extra.items()):
            about = name.removeprefix("gpufleet_").replace("_", " ")
            if name.endswith("_total"):
                yield CounterMetricFamily(name.removesuffix("_total"), about, value=value)
            else:
                yield GaugeMetricFamily(name, about, value=value)
        yield from _gpu_families(self.gpu)


def _gpu_families(gpu: dict[str, Any]) -> Iterator[Metric]:
    """Per-GPU gauges, or ``gpufleet_gpu_available 0`` with the reason: never an error."""
    status = gpu.get("status", "unavailable")
    yield GaugeMetricFamily("gpufleet_gpu_available", "1 when NVML reads the GPUs",
                            value=1 if status == "available" else 0)
    state = GaugeMetricFamily("gpufleet_gpu_status", "GPU telemetry status and reason",
                              labels=["status", "reason"])
    state.add_metric([status, str(gpu.get("reason", ""))], 1)
    yield state
    for name, key in GPU_GAUGES:
        family = GaugeMetricFamily(f"gpufleet_gpu_{name}", f"GPU {key.replace('_', ' ')}", labels=["gpu", "uuid"])
        for dev in gpu.get("gpus", []):
            if dev.get(key) is not None:
                family.add_metric([str(dev["index"]), str(dev["uuid"])], dev[key])
        yield family


class _Families(Collector):
    def __init__(self, families: Iterator[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return self.families


def render_gpu(gpu: dict[str, Any]) -> list[str]:
    """The GPU reading's lines of Prometheus text."""
    return generate_latest(_Families(_gpu_families(gpu))).decode().splitlines()
