"""Shapes shared by the stacks, the CLI and the agents: table keys, job and model states, tags.

The stacks create the tables with these keys; the agents and CLI read and write them. Keeping them
here means one change moves all three.
"""

from __future__ import annotations

from typing import Literal

# DynamoDB key schemas: table -> [(attribute, type, key_type)]
TABLE_KEYS: dict[str, list[tuple[str, str, str]]] = {
    "jobs": [("job_id", "S", "HASH")],
    "models": [("model_name", "S", "HASH"), ("version", "N", "RANGE")],
    "endpoints": [("endpoint", "S", "HASH")],
    # The operator's decisions, pinned to the artifact they judged. Only the operator role may write it,
    # so a host (or job code holding a host's credentials) cannot approve what it registered.
    "approvals": [("model_name", "S", "HASH"), ("version", "N", "RANGE")],
}

BUCKETS = ("data", "artifacts", "checkpoints", "capture", "logs")

JobStatus = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "INTERRUPTED", "CANCELLED"]
JOB_CLAIMABLE: tuple[JobStatus, ...] = ("QUEUED", "INTERRUPTED")
JOB_FINAL: tuple[JobStatus, ...] = ("SUCCEEDED", "FAILED", "CANCELLED")

ModelStatus = Literal["PendingManualApproval", "Approved", "Rejected"]
Variant = Literal["blue", "green"]
VARIANTS: tuple[Variant, ...] = ("blue", "green")

# Tag keys on every resource.
TAG_PLATFORM = "gpufleet:platform"
TAG_TEAM = "gpufleet:team"
TAG_ROLE = "gpufleet:role"
TAG_ENDPOINT = "gpufleet:endpoint"
TAG_VARIANT = "gpufleet:variant"

METRIC_NAMESPACE = "gpufleet"

# The training ASG's termination lifecycle hook is named <asg><suffix>; the stacks create it, the agent
# completes it after its final checkpoint sync.
CHECKPOINT_HOOK_SUFFIX = "-checkpoint"

# The team stack's output holding the team runtime config (JSON).
RUNTIME_OUTPUT = "runtime_config"
