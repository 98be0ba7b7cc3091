"""The training agent's tunables (``training:`` in the agent config). Defaults suit AWS; tests shrink them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gpufleet.schema.priority import DEFAULT_GUARD_ROUNDS


class TrainingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # SQS wait for the last queue of a round: it bounds an idle agent's pickup (why 1 s: agent/training/queues.py).
    poll_wait_s: int = Field(default=1, ge=1, le=20)
    # Waiting even 1 s makes SQS query all its servers (a 0 s short poll samples some and can miss the
    # one waiting high-priority message), yet costs little when a higher queue is empty.
    higher_queue_wait_s: int = Field(default=1, ge=1, le=20)
    # An idle agent's long poll on the team's wake queue; without a hint this long it sweeps every queue (for a
    # job whose hint was lost). SQS's longest wait: fewest requests, and a stop cuts the wait short.
    wake_wait_s: int = Field(default=20, ge=1, le=20)
    starvation_guard_rounds: int = Field(default=DEFAULT_GUARD_ROUNDS, ge=1, le=1000)  # see schema.priority
    visibility_timeout_s: int = Field(default=300, ge=2, le=43200)  # each heartbeat extends the message this far
    heartbeat_s: float = Field(default=30.0, gt=0)
    stale_after_s: float = Field(default=600.0, gt=0)   # a RUNNING job not heartbeated this long is taken over
    # Claims of one job (interruptions and take-overs of a dead agent count; a failing script fails at once).
    # The claim past this ends the job FAILED and moves its message to the DLQ. 4: one less than the
    # stacks' maxReceiveCount (5), because a take-over is a receive and SQS never hands out the receive
    # after the last; an agent also gives a job up on that last receive, whatever this says.
    max_attempts: int = Field(default=4, ge=1, le=30)
    stop_grace_s: float = Field(default=60.0, ge=0)     # SIGTERM to SIGKILL; a spot notice gives 120 s in all
    spot_poll_s: float = Field(default=5.0, gt=0)
    log_flush_s: float = Field(default=10.0, gt=0)
    log_tail_lines: int = Field(default=20, ge=1, le=500)  # the reason of a failed job quotes these
    cloudwatch_log_group: str | None = None   # also stream job logs there; default: the team runtime's
    lifecycle_hook: str | None = None   # the ASG hook completed after a drain; default <asg>-checkpoint (the stacks')
    rendezvous_port: int = Field(default=29400, ge=0, le=65535)  # 0: any free port (loopback tests)
    python: str | None = None     # interpreter with torch for torchrun; default: the agent's own
    job_user: str = "gpufleet-job"   # jobs run as this Unix user when the agent is root (the Ansible role makes it)
    job_credentials_s: int = Field(default=3600, ge=900, le=43200)   # lifetime of each job-role session
