"""The team runtime config: one JSON document per team, built from the team stack's outputs.

The CLI writes it to a file (``.gpufleet/teams/<team>.json`` locally); user-data writes it, plus the
agent's own fields (see ``gpufleet.schema.agent_config``), to the agent's config. Neither side knows cdktf.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpufleet.errors import UserInputError
from gpufleet.images import IMAGE
from gpufleet.schema.priority import DEFAULT_PRIORITY, PRIORITIES, Priority


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Buckets(_Doc):
    data: str
    artifacts: str
    checkpoints: str
    capture: str
    logs: str


class Tables(_Doc):
    jobs: str
    models: str
    endpoints: str
    approvals: str


class PriorityQueues(_Doc):
    """The team's job queue URL per priority (all share ``dlq_url``)."""

    high: str
    normal: str
    low: str


class TrainingRuntime(_Doc):
    asg: str
    log_group: str | None = None   # CloudWatch Logs group for job logs (the team stack makes one)


class VariantPair(_Doc):
    blue: str
    green: str


class EndpointRuntime(_Doc):
    alb_dns: str
    listener_arn: str
    rule_arn: str            # the listener rule forwarding /ping and /invocations (rollouts set its weights)
    target_groups: VariantPair
    asgs: VariantPair
    alarms: list[str] = Field(default_factory=list)
    # The endpoint's bring-your-own-container image (SageMaker's serve contract); None: models serve in
    # the agent's own process. May be repository-relative (see gpufleet.images).
    image: str | None = Field(default=None, pattern=IMAGE)


class TeamRuntime(_Doc):
    platform: str
    team: str
    region: str
    buckets: Buckets
    queue_url: str        # the normal-priority queue; the only queue of configs from before priorities
    dlq_url: str
    tables: Tables
    training: TrainingRuntime
    endpoints: dict[str, EndpointRuntime] = Field(default_factory=dict)
    # The role job code runs with (the training agent assumes it per job); None: jobs get no AWS credentials.
    job_role_arn: str | None = None
    queues: PriorityQueues | None = None
    # Hints for idle training agents, one per job message (gpufleet/store/wake.py); None in configs from before
    # it: agents then take turns on the priority queues.
    wake_url: str | None = None
    # The team's ECR repository URL (<account>.dkr.ecr.<region>.amazonaws.com/<platform>-<team>-images):
    # repository-relative images resolve against its registry. None in configs from before it.
    image_repository: str | None = None

    def queue_for(self, priority: Priority) -> str:
        """The queue of ``priority``; a config without ``queues`` has one queue for all."""
        return getattr(self.queues, priority) if self.queues else self.queue_url

    @property
    def priority_queues(self) -> dict[Priority, str]:
        """Each distinct job queue by its priority, high first."""
        if self.queues is None:
            return {DEFAULT_PRIORITY: self.queue_url}
        return {p: getattr(self.queues, p) for p in PRIORITIES}

    @property
    def all_queue_urls(self) -> list[str]:
        """Every queue of the team: the job queues, then the dead-letter queue."""
        return [*self.priority_queues.values(), self.dlq_url]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def parse_runtime(data: object, source: str) -> TeamRuntime:
    try:
        return TeamRuntime.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(
            f"{source}: {'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']} "
            "(regenerate it with `gpufleet deploy`)"
            for e in exc.errors()
        ) from None


def load_runtime(path: str | Path) -> TeamRuntime:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError([f"{path}: no team runtime config (deploy the team first: "
                              "`gpufleet deploy team-<name>`)"]) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError([f"{path}: not a readable JSON document ({exc})"]) from None
    return parse_runtime(data, str(path))
