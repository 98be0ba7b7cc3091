"""Wake-up hints: each job message sent to a priority queue is followed by one hint in the team's wake queue,
which idle training agents long-poll (``gpufleet/agent/training/wake.py``).

SQS cannot wait on several queues at once: an idle agent used to take turns on the three priority queues, 1 s
each, and a job waited for its queue's turn (a mean pickup of 0.7-0.9 s on ``scripts/bench-training``). A hint
names the job's priority, so the woken agent asks that queue with a wait (the message is there: it returns at
once) and the others without. A hint is only a hint: an agent that gets none still sweeps every queue after
each ``wake_wait_s``, so a lost hint delays a job, never loses it.
"""

from __future__ import annotations

import json
from typing import Any

from gpufleet.aws import AWS_ERRORS
from gpufleet.schema.priority import PRIORITIES, Priority
from gpufleet.schema.runtime import TeamRuntime

# SQS's shortest retention: a hint a minute old was acted on long ago, or its job was taken by a full round.
HINT_RETENTION_S = 60
MAX_DELAY_S = 900   # SQS's largest DelaySeconds


def hint_body(priority: Priority) -> str:
    return json.dumps({"priority": priority})


def parse_hint(body: str) -> Priority | None:
    """The hinted priority; None for a body that names none (the woken agent then asks every queue)."""
    try:
        priority = json.loads(body).get("priority")
    except (ValueError, AttributeError):
        return None
    return priority if priority in PRIORITIES else None


def wake_agents(sqs: Any, runtime: TeamRuntime, priority: Priority, *, count: int = 1, delay_s: int = 0) -> str | None:
    """Send ``count`` hints, one per job message just sent (each message wakes its own agent), visible after
    ``delay_s`` like the message. Returns None, or why they were not sent: the job is queued either way, so the
    caller logs it and goes on. A runtime from before the wake queue has none to send to."""
    if runtime.wake_url is None:
        return None
    try:
        for _ in range(count):
            sqs.send_message(QueueUrl=runtime.wake_url, MessageBody=hint_body(priority),
                             DelaySeconds=min(delay_s, MAX_DELAY_S))
    except AWS_ERRORS as exc:
        return str(exc)
    return None
