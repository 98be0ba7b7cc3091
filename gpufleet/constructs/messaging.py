"""JobQueue (SQS with a dead-letter queue), WakeQueue (hints for idle agents) and AlarmTopic (encrypted SNS)."""

from __future__ import annotations

from cdktf import Fn
from constructs import Construct

from gpufleet.constructs.policy import Grantee, Statement, sid
from gpufleet.providers import SnsTopic, SqsQueue
from gpufleet.store.wake import HINT_RETENTION_S

# Callers get the queue URL from the team runtime, so neither side needs GetQueueUrl or GetQueueAttributes.
CONSUME_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility")
SEND_ACTIONS = ("sqs:SendMessage",)


class JobQueue(Construct):
    """An encrypted SQS queue whose messages move to an encrypted DLQ after ``max_receives`` receives.

    The queue makes its own DLQ named ``dlq_name``, or shares the DLQ of ``dead_letter`` (one team's
    priority queues share one DLQ, so operators watch and redrive one place).
    ``visibility_timeout_s`` should be a few heartbeats long: the consumer extends it while it works.
    """

    def __init__(self, scope: Construct, queue_id: str, *, name: str, key_arn: str, dlq_name: str | None = None,
                 dead_letter: JobQueue | None = None, visibility_timeout_s: int = 300, max_receives: int = 5,
                 retention_s: int = 14 * 24 * 3600, ignore_redrive_drift: bool = False) -> None:
        super().__init__(scope, queue_id)
        if (dlq_name is None) == (dead_letter is None):
            raise ValueError("JobQueue: give exactly one of dlq_name (a new DLQ) or dead_letter (share its DLQ)")
        self.dlq: SqsQueue = dead_letter.dlq if dead_letter else SqsQueue(
            self, "dlq", name=dlq_name, kms_master_key_id=key_arn, message_retention_seconds=retention_s)
        self.queue = SqsQueue(self, "queue", name=name, kms_master_key_id=key_arn,
                              kms_data_key_reuse_period_seconds=300,
                              visibility_timeout_seconds=visibility_timeout_s,
                              message_retention_seconds=retention_s,
                              redrive_policy=Fn.jsonencode({"deadLetterTargetArn": self.dlq.arn,
                                                            "maxReceiveCount": max_receives}),
                              # moto returns the policy re-serialized with spaces, a change on every plan.
                              lifecycle={"ignore_changes": ["redrive_policy"]} if ignore_redrive_drift else None)
        self.name, self.url, self.arn = name, self.queue.url, self.queue.arn
        self.dlq_name: str = dead_letter.dlq_name if dead_letter else str(dlq_name)
        self.dlq_url, self.dlq_arn = self.dlq.url, self.dlq.arn

    def grant_consume(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("Consume", label), CONSUME_ACTIONS, (self.arn,)))

    def grant_read_redrive(self, grantee: Grantee, label: str) -> None:
        """Read the queue's attributes (its redrive policy's maxReceiveCount bounds a job's attempts)."""
        grantee.add_to_policy(Statement(sid("Attributes", label), ("sqs:GetQueueAttributes",), (self.arn,)))

    def grant_send(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("Send", label), SEND_ACTIONS, (self.arn,)))

    def grant_dead_letter(self, grantee: Grantee, label: str) -> None:
        """Send to the DLQ only (a consumer moving a message it gave up on there)."""
        grantee.add_to_policy(Statement(sid("DeadLetter", label), ("sqs:SendMessage",), (self.dlq_arn,)))


class WakeQueue(Construct):
    """The team's wake-up hints for idle training agents (``gpufleet/store/wake.py``): small, short-lived
    messages, encrypted with the team key like the jobs they point at. No dead-letter queue: a hint is deleted
    on receipt or expires after a minute, and losing one only delays its job to the agents' next sweep."""

    def __init__(self, scope: Construct, queue_id: str, *, name: str, key_arn: str) -> None:
        super().__init__(scope, queue_id)
        self.queue = SqsQueue(self, "queue", name=name, kms_master_key_id=key_arn,
                              kms_data_key_reuse_period_seconds=300, message_retention_seconds=HINT_RETENTION_S)
        self.name, self.url, self.arn = name, self.queue.url, self.queue.arn

    def grant_wait(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("Wait", label), ("sqs:ReceiveMessage", "sqs:DeleteMessage"),
                                        (self.arn,)))

    def grant_send(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("Send", label), SEND_ACTIONS, (self.arn,)))


class AlarmTopic(Construct):
    """An SNS topic encrypted with a customer-managed key, for CloudWatch alarm actions."""

    def __init__(self, scope: Construct, topic_id: str, *, name: str, key_id: str) -> None:
        super().__init__(scope, topic_id)
        self.topic = SnsTopic(self, "topic", name=name, kms_master_key_id=key_id)
        self.arn: str = self.topic.arn
        self.name = name
