"""A poison job, one that takes its agent down on every attempt (here it SIGKILLs the agent; on AWS, an
OOM-killed or crashing host), must not be retried forever, nor lose its record to the queue's redrive.

What must hold: after ``training.max_attempts`` claims, or on the last receive the queue's redrive allows
(whichever comes first), the job is FAILED with why, its message is in the DLQ, nothing of it is left
queued or running, and the agents go on to the next job. Before, the redrive moved the message to the DLQ
on its own and left the record RUNNING for ever.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import SCRIPTS, AgentProc, Team, processes_with_env, wait_for

POISON = Path(__file__).parent / "scripts"
QUEUE_MAX_RECEIVES = 3   # tests.support.aws.create_team_resources' redrive


def _queued(team: Team) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attrs = team.clients.sqs.get_queue_attributes(QueueUrl=team.runtime.queue_url, AttributeNames=names)
    return sum(int(attrs["Attributes"].get(name, 0)) for name in names)


@pytest.mark.slow
@pytest.mark.parametrize(("max_attempts", "why"), [
    (2, "the agents' training.max_attempts is 2"),
    (10, f"its message was received {QUEUE_MAX_RECEIVES} times, the queue's maxReceiveCount")])
def test_a_poison_job_reaches_max_attempts_then_is_failed_and_dead_lettered_with_its_record_consistent(
        team: Team, start_agent, max_attempts: int, why: str) -> None:
    job_id = team.submit(POISON, name="poison", entry_point="kill_agent.py")
    agents: list[AgentProc] = []

    def supervise() -> str | None:
        """Restart the agent when it dies, as systemd's Restart=always does on a host."""
        if not agents or agents[-1].proc.poll() is not None:
            agents.append(start_agent(f"host-{len(agents)}", max_attempts=max_attempts))
        status = team.job(job_id)["status"]
        return status if status in ("FAILED", "SUCCEEDED", "CANCELLED") else None

    assert wait_for(supervise, 240, "the poison job to end", every_s=0.5) == "FAILED"
    job = team.job(job_id)
    assert job["attempts"] == 2
    assert job["reason"] == (f"gave up after 2 attempts ({why}); the last one: its agent on {job['claimed_by']} "
                             "stopped heartbeating")
    assert job["dead_letter"] is True and "finished_at" in job and "publisher" not in job
    assert len(agents) == 3, "each attempt killed one agent; the last one gave up and lives"

    dead = wait_for(lambda: team.clients.sqs.receive_message(QueueUrl=team.runtime.dlq_url).get("Messages"),
                    30, "the job's message in the DLQ")
    assert [json.loads(m["Body"]) for m in dead] == [{"job_id": job_id}]
    wait_for(lambda: _queued(team) == 0, 30, "nothing of the job left in the queue")
    assert not processes_with_env("GPUFLEET_JOB_ID", job_id)
    assert team.job(job_id)["status"] == "FAILED"

    good = team.submit(SCRIPTS, name="after", entry_point="sleep.py", hyperparameters={"seconds": 0.1})
    assert team.wait_status(good, ("FAILED", "SUCCEEDED"), timeout_s=120)["status"] == "SUCCEEDED"
    assert agents[-1].proc.poll() is None
