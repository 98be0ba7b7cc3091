"""Dashboard: a CloudWatch dashboard of metric graphs, laid out two per row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktf import Fn
from constructs import Construct

from gpufleet.providers import CloudwatchDashboard


@dataclass(frozen=True)
class Graph:
    title: str
    metrics: Sequence[Sequence[object]]  # CloudWatch's [namespace, metric, dim, value, ...] rows
    stat: str = "Sum"


class Dashboard(Construct):
    def __init__(self, scope: Construct, dash_id: str, *, name: str, region: str, graphs: Sequence[Graph]) -> None:
        super().__init__(scope, dash_id)
        widgets = [{"type": "metric", "width": 12, "height": 6, "x": 12 * (i % 2), "y": 6 * (i // 2),
                    "properties": {"title": g.title, "region": region, "stat": g.stat, "period": 60,
                                   "metrics": [list(m) for m in g.metrics]}}
                   for i, g in enumerate(graphs)]
        self.dashboard = CloudwatchDashboard(self, "dashboard", dashboard_name=name,
                                             dashboard_body=Fn.jsonencode({"widgets": widgets}))
        self.name = name
