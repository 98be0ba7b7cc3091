"""Receiving from the team's priority queues (high, normal, low) by the rule in ``gpufleet.schema.priority``:
high drains first, and a starvation guard asks a queue first once it has been passed over
``starvation_guard_rounds`` times in a row, so low (and normal) jobs still progress.

A round asks every queue with a short wait (``higher_queue_wait_s`` before the last of a round, ``poll_wait_s``
for the last; both 1 s by default: long enough that SQS asks all its servers, so a lone waiting message is
not missed). SQS cannot wait on several queues at once: taking turns, a job that lands in one queue while
another is being asked waits out that poll (a mean pickup of 0.7-0.9 s at 1 s; 7.7 s median with 20 s on the
last queue, ``scripts/bench-training``). So an agent whose last round found nothing waits on the team's wake
queue instead (``wake.py``): a hint names the job's priority, and the round that follows asks that queue with
its wait (the message is there, so it returns at once) and the others with none. Without a hint for
``wake_wait_s`` it sweeps every queue without a wait, for a job whose hint was lost: a few milliseconds in
which a new job cannot miss its turn. Such a short poll may sample only some of SQS's servers, so a lost
hint's job may take a few sweeps; every job that has its hint is found at once. An idle agent makes four
requests every 20 s, against about one a second taking turns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufleet.agent.training.wake import WakeListener
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

    def __init__(self, sqs: Any, runtime: TeamRuntime, settings: TrainingSettings,
                 interrupted: Callable[[], bool] = lambda: False) -> None:
        self.sqs, self.settings = sqs, settings
        self.urls = runtime.priority_queues
        self.turns = QueueTurns(settings.starvation_guard_rounds, tuple(self.urls))
        self.wake = (WakeListener(sqs, runtime.wake_url, settings.wake_wait_s, interrupted)
                     if runtime.wake_url else None)
        self.idle = False   # the last round found every queue empty: wait for a hint before the next

    def receive(self) -> Received | None:
        """One round: the first message of the queues in this round's order, or None when all are empty (or
        the wait for a hint was interrupted)."""
        asked = frozenset(self.urls)
        if self.idle and self.wake is not None:
            hinted = self.wake.wait()
            if hinted is None:
                return None
            asked = self._asked_after(hinted)
        received = self._round(asked)
        self.idle = received is None
        return received

    def _asked_after(self, hinted: frozenset[Priority]) -> frozenset[Priority]:
        """The queues to ask with a wait after the wake queue's answer: none after no hint (a sweep); the
        hinted one; every queue for a hint this runtime has no queue for (a config from before priorities has
        one queue for all)."""
        if not hinted:
            return hinted
        return hinted & frozenset(self.urls) or frozenset(self.urls)

    def _round(self, asked: frozenset[Priority]) -> Received | None:
        order = self.turns.order()
        for i, priority in enumerate(order):
            wait = self.settings.poll_wait_s if i == len(order) - 1 else self.settings.higher_queue_wait_s
            messages = self.sqs.receive_message(
                QueueUrl=self.urls[priority], MaxNumberOfMessages=1,
                WaitTimeSeconds=wait if priority in asked else 0,
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
