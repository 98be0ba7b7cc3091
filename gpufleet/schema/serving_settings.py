"""The serving role's settings: ``serving:`` in the agent config (``gpufleet.schema.agent_config``).

Pydantic at the edge only: read once at start, never on the request path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServingSettings(BaseModel):
    """Serving role knobs (``serving:`` in the agent config); the defaults suit a real-time endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_batch_size: int = Field(default=64, ge=1, le=4096)
    max_batch_delay_ms: float = Field(default=5.0, ge=0, le=1000)  # waited only while requests keep coming
    request_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_payload_bytes: int = Field(default=6 * 1024 * 1024, ge=1)   # SageMaker real-time's 6 MB limit
    drain_timeout_s: float = Field(default=30.0, ge=0, le=3600)     # SIGTERM: finish in-flight requests
    poll_interval_s: float = Field(default=5.0, gt=0, le=600)       # endpoints-table watch for model swaps
    metrics_interval_s: float = Field(default=60.0, gt=0, le=3600)  # CloudWatch publish period
    capture_percent: float = Field(default=0.0, ge=0, le=100)
    capture_queue_size: int = Field(default=1000, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # An endpoint with image: how long a new version's container may take to answer /ping 200 (a large
    # model loads first); the current version serves meanwhile.
    container_start_timeout_s: float = Field(default=600.0, gt=0, le=3600)
