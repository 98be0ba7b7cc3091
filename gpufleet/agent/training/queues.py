"""Receiving from the team's priority queues (high, normal, low) by the rule in ``gpufleet.schema.priority``:
high drains first, and a starvation guard asks a queue first once it has been passed over
``starvation_guard_rounds`` times in a row, so low (and normal) jobs still progress.

Every queue is asked with a short wait (``higher_queue_wait_s`` before the last of a round, ``poll_wait_s``
for the last; both 1 s by default: long enough that SQS asks all its servers, so a lone waiting message is
not missed). SQS cannot wait on several queues at once, and a job that lands in one queue while another is
being asked waits out that poll: with 20 s on the last queue, an idle agent picked up a normal-priority job
7.7 s after its submit (median, ``scripts/bench-training``). At 1 s an idle agent makes about one request a
second, and a fleet without jobs scales to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpufleet.schema.priority import Priority, QueueTurns
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.schema.training_settings import TrainingSettings


@dataclass(frozen=True)
class Receipt:
    """Where a received message lives, to delete it or change its visibility later."""

    queue_url: str
    handle: str
    priority: Priority


@dataclass(frozen=True)
class Received:
    receipt: Receipt
    body: str
    message_id: str | None
    receives: int   # ApproximateReceiveCount: the claim gives a job up before the redrive would


class PriorityReceiver:
    """One agent's receive side: which queue to ask next, and asking it."""

    def __init__(self, sqs: Any, runtime: TeamRuntime, settings: TrainingSettings) -> None:
        self.sqs, self.settings = sqs, settings
        self.urls = runtime.priority_queues
        self.turns = QueueTurns(settings.starvation_guard_rounds, tuple(self.urls))

    def receive(self) -> Received | None:
        """One round: the first message of the queues in this round's order, or None when all are empty."""
        order = self.turns.order()
        for i, priority in enumerate(order):
            last = i == len(order) - 1
            messages = self.sqs.receive_message(
                QueueUrl=self.urls[priority], MaxNumberOfMessages=1,
                WaitTimeSeconds=self.settings.poll_wait_s if last else self.settings.higher_queue_wait_s,
                VisibilityTimeout=self.settings.visibility_timeout_s,
                AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            if not messages:
                self.turns.found_empty(priority)
                continue
            self.turns.took(priority)
            message = messages[0]
            return Received(Receipt(self.urls[priority], message["ReceiptHandle"], priority), message["Body"],
                            message.get("MessageId"),
                            int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
        return None
