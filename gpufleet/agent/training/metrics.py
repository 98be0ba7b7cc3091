"""Metric definitions (name + regex) applied to each line of the job's output: the latest values go
into the job record, every value into CloudWatch (namespace ``gpufleet``, dimensions Team and Job)."""

from __future__ import annotations

import math
import re
import threading
from datetime import UTC, datetime
from typing import Any

from gpufleet.schema import METRIC_NAMESPACE
from gpufleet.schema.job_spec import MetricDefinition

_MAX_PER_CALL = 1000   # put_metric_data's limit


class MetricParser:
    def __init__(self, definitions: list[MetricDefinition]) -> None:
        self._defs = [(d.name, re.compile(d.regex)) for d in definitions]
        self.latest: dict[str, float] = {}
        self._pending: list[tuple[str, float, datetime]] = []
        self._lock = threading.Lock()

    def feed(self, line: str) -> None:
        for name, pattern in self._defs:
            match = pattern.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1))
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            with self._lock:
                self.latest[name] = value
                self._pending.append((name, value, datetime.now(UTC)))

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.latest)

    def flush(self, cloudwatch: Any, team: str, job_id: str) -> int:
        """Send pending values to CloudWatch; returns how many were sent."""
        with self._lock:
            pending, self._pending = self._pending, []
        dims = [{"Name": "Team", "Value": team}, {"Name": "Job", "Value": job_id}]
        for i in range(0, len(pending), _MAX_PER_CALL):
            cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[
                {"MetricName": name, "Dimensions": dims, "Value": value, "Timestamp": ts}
                for name, value, ts in pending[i:i + _MAX_PER_CALL]])
        return len(pending)
