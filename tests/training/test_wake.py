"""Wake-up hints on the moto server: a submit wakes an idle receiver, which takes the job from the hinted queue;
a job whose hint is lost is still found. The receive side is the agent's own, on real SQS calls."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from gpufleet.agent.training.queues import PriorityReceiver, Receipt
from gpufleet.agent.training.runner import AgentContext
from gpufleet.agent.training.spot import Notice
from gpufleet.schema.agent_config import AgentConfig
from gpufleet.schema.training_settings import TrainingSettings
from gpufleet.store.wake import wake_agents
from tests.training.conftest import SCRIPTS, Team


class Recorded:
    """The team's real SQS client, recording each receive's queue and wait."""

    def __init__(self, sqs: Any) -> None:
        self.sqs, self.waits = sqs, []   # type: Any, list[tuple[str, int]]

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.waits.append((request["QueueUrl"], request["WaitTimeSeconds"]))
        return self.sqs.receive_message(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


def _waiting(team: Team, url: str) -> int:
    attrs = team.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attrs.values())


def test_a_submit_wakes_an_idle_receiver_which_takes_the_job_from_the_hinted_queue(team: Team) -> None:
    sqs = Recorded(team.clients.sqs)
    receiver = PriorityReceiver(sqs, team.runtime, TrainingSettings())
    assert receiver.receive() is None and receiver.idle
    job_id = team.submit(SCRIPTS, name="low-one", priority="low", entry_point="sleep.py")
    sqs.waits.clear()
    received = receiver.receive()
    assert received is not None and json.loads(received.body) == {"job_id": job_id}
    assert received.receipt.priority == "low"
    queues = team.runtime.priority_queues
    assert sqs.waits == [(team.runtime.wake_url, 20), (queues["high"], 0), (queues["normal"], 0),
                         (queues["low"], 1)]
    assert _waiting(team, str(team.runtime.wake_url)) == 0, "the hint was deleted, not left to wake another"


def test_a_job_whose_hint_was_lost_is_found_after_the_wake_wait(team: Team) -> None:
    sqs = Recorded(team.clients.sqs)
    receiver = PriorityReceiver(sqs, team.runtime, TrainingSettings(wake_wait_s=1))
    receiver.idle = True
    team.clients.sqs.send_message(QueueUrl=team.runtime.queue_for("normal"), MessageBody='{"job_id": "j-1"}')
    received = receiver.receive()   # no hint in 1 s: a sweep without waits
    assert received is not None and json.loads(received.body) == {"job_id": "j-1"}
    assert [wait for _, wait in sqs.waits] == [1, 0, 0], "the wake queue's wait, then high and normal swept"


def test_hints_follow_their_message_count_and_delay(team: Team) -> None:
    wake = str(team.runtime.wake_url)
    assert wake_agents(team.clients.sqs, team.runtime, "high", count=2, delay_s=3) is None
    assert team.clients.sqs.receive_message(QueueUrl=wake, WaitTimeSeconds=0).get("Messages") is None, \
        "hidden as long as its delayed job message"
    hints: list[dict[str, Any]] = []
    for _ in range(5):   # SQS may hand out the two in separate receives
        hints += team.clients.sqs.receive_message(QueueUrl=wake, WaitTimeSeconds=10,
                                                  MaxNumberOfMessages=10).get("Messages", [])
        if len(hints) >= 2:
            break
    assert [json.loads(h["Body"]) for h in hints] == [{"priority": "high"}] * 2
    broken = team.runtime.model_copy(update={"wake_url": wake + "-missing"})
    why = wake_agents(team.clients.sqs, broken, "normal")
    assert why is not None and "NonExistentQueue" in why, "a failed hint is reported, not raised"


def test_a_job_handed_back_is_re_sent_with_its_hint(team: Team, tmp_path: Path) -> None:
    """The re-queue of an interrupted or deferred job (runner.py) wakes an idle agent as a submit does."""
    sqs, high = team.clients.sqs, team.runtime.queue_for("high")
    sqs.send_message(QueueUrl=high, MessageBody='{"job_id": "j-2"}')
    (message,) = sqs.receive_message(QueueUrl=high, WaitTimeSeconds=1)["Messages"]
    config = AgentConfig(role="training", team=team.runtime, work_root=str(tmp_path))
    # Re-queueing uses the context's clients and config only; the host-side parts are not needed here.
    ctx = AgentContext(config=config, clients=team.clients, identity=None, layout=None,  # type: ignore[arg-type]
                       notice=Notice(), stop=threading.Event())
    ctx.requeue("j-2", Receipt(high, message["ReceiptHandle"], "high"))
    (hint,) = sqs.receive_message(QueueUrl=str(team.runtime.wake_url), WaitTimeSeconds=1)["Messages"]
    assert json.loads(hint["Body"]) == {"priority": "high"}
    (again,) = sqs.receive_message(QueueUrl=high, WaitTimeSeconds=1)["Messages"]
    assert json.loads(again["Body"]) == {"job_id": "j-2"} and again["MessageId"] != message["MessageId"]
