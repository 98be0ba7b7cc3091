"""The queue selection rule (gpufleet.schema.priority) and the job spec's priority, without a server."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from gpufleet.agent.training.queues import PriorityReceiver
from gpufleet.errors import UserInputError
from gpufleet.jobs.ops import queue_positions
from gpufleet.schema.job_spec import parse_job_spec
from gpufleet.schema.priority import PRIORITIES, QueueTurns, take_order
from gpufleet.schema.training_settings import TrainingSettings

SPEC = {"name": "j", "team": "alpha", "entry_point": "train.py", "source": "s3://bucket/code.tar.gz"}


def test_a_fresh_agent_asks_high_then_normal_then_low() -> None:
    assert QueueTurns().order() == ["high", "normal", "low"]


def test_high_submitted_behind_ten_normal_jobs_is_taken_next() -> None:
    order = list(take_order({"normal": [f"n{i}" for i in range(10)], "high": ["h"]}))
    assert order == ["h", *(f"n{i}" for i in range(10))]
    turns = QueueTurns(guard_rounds=4)
    for _ in range(7):   # an agent that has been taking normal jobs a while: low is due, normal never
        turns.took("normal")
    assert turns.order() == ["low", "high", "normal"]


def _endless(priority: str) -> Iterator[str]:
    return (f"{priority}{i}" for i in itertools.count())


@pytest.mark.parametrize("guard_rounds", [1, 2, 4, 10])
def test_under_a_full_backlog_high_gets_most_and_each_lower_queue_waits_behind_at_most_guard_rounds(
        guard_rounds: int) -> None:
    waiting = {p: _endless(p) for p in PRIORITIES}
    taken = [job.rstrip("0123456789") for job in itertools.islice(take_order(waiting, guard_rounds), 300)]
    assert taken[:guard_rounds] == ["high"] * guard_rounds
    assert taken.count("high") >= taken.count("normal") and taken.count("high") >= taken.count("low") / 2
    for queue, slack in (("normal", 0), ("low", 1)):   # low may also wait for a normal job due at the same time
        rank = PRIORITIES.index(queue)
        passed_over = 0
        for priority in taken:
            if priority == queue:
                passed_over = 0
            elif PRIORITIES.index(priority) < rank:
                passed_over += 1
                assert passed_over <= guard_rounds + slack, f"{queue} starved"


def test_low_is_not_starved_by_a_stream_of_high_jobs() -> None:
    order = list(take_order({"high": [f"h{i}" for i in range(20)], "low": ["l"]}, guard_rounds=3))
    assert order.index("l") == 3


def test_a_due_queue_found_empty_costs_a_receive_not_a_job() -> None:
    turns = QueueTurns(guard_rounds=2)
    turns.took("high")
    turns.took("normal")
    assert turns.order() == ["low", "high", "normal"], "normal was passed over once, low twice"
    turns.found_empty("low")
    assert turns.order() == ["high", "normal", "low"]
    tie = QueueTurns(guard_rounds=2)
    tie.took("high")
    tie.took("high")
    assert tie.order() == ["low", "normal", "high"], "both due as long: the lower priority first"


class RecordingSqs:
    """A stand-in SQS client for the receive side alone: records each receive's queue and wait, finds nothing."""

    def __init__(self) -> None:
        self.waits: list[tuple[str, int]] = []

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.waits.append((request["QueueUrl"], request["WaitTimeSeconds"]))
        return {}


def test_an_idle_agent_asks_every_queue_with_a_one_second_wait_by_default() -> None:
    # SQS cannot wait on several queues at once: a job landing in one queue waits out the poll on another, so
    # these waits bound an idle agent's pickup (20 s on the last queue made it 7.7 s median on bench-training).
    runtime = SimpleNamespace(priority_queues=QUEUES, wake_url=None)   # a runtime from before the wake queue
    sqs = RecordingSqs()
    receiver = PriorityReceiver(sqs, runtime, TrainingSettings())  # type: ignore[arg-type]
    assert receiver.receive() is None and receiver.receive() is None
    assert sqs.waits == [("q-high", 1), ("q", 1), ("q-low", 1)] * 2


class HintingSqs(RecordingSqs):
    """As RecordingSqs, but the wake queue hands out the given hint bodies in turn (then nothing), and deletes
    are recorded."""

    def __init__(self, *hints: str) -> None:
        super().__init__()
        self.hints, self.deleted = list(hints), []   # type: list[str]

    def receive_message(self, **request: Any) -> dict[str, Any]:
        super().receive_message(**request)
        if request["QueueUrl"] == "q-wake" and self.hints:
            return {"Messages": [{"ReceiptHandle": f"h{len(self.waits)}", "Body": self.hints.pop(0)}]}
        return {}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:
        self.deleted.append(ReceiptHandle)


QUEUES = {"high": "q-high", "normal": "q", "low": "q-low"}
WAKE_RUNTIME = SimpleNamespace(priority_queues=QUEUES, wake_url="q-wake")


def test_an_idle_agent_waits_for_a_hint_then_asks_the_hinted_queue_with_a_wait_and_the_others_without() -> None:
    sqs = HintingSqs('{"priority": "low"}')
    receiver = PriorityReceiver(sqs, WAKE_RUNTIME, TrainingSettings())  # type: ignore[arg-type]
    assert receiver.receive() is None, "a fresh agent asks every queue first: it may start on a backlog"
    assert sqs.waits == [("q-high", 1), ("q", 1), ("q-low", 1)]
    sqs.waits.clear()
    assert receiver.receive() is None
    assert sqs.waits == [("q-wake", 20), ("q-high", 0), ("q", 0), ("q-low", 1)]
    assert sqs.deleted == ["h1"], "a hint is deleted once taken, so it wakes one agent"
    sqs.waits.clear()
    assert receiver.receive() is None
    assert sqs.waits == [("q-wake", 20), ("q-high", 0), ("q", 0), ("q-low", 0)], \
        "20 s without a hint: a sweep for a job whose hint was lost, without waits in which a new job waits its turn"


def test_a_hint_naming_no_priority_wakes_a_full_round() -> None:
    sqs = HintingSqs("not a hint")
    receiver = PriorityReceiver(sqs, WAKE_RUNTIME, TrainingSettings(wake_wait_s=5))  # type: ignore[arg-type]
    receiver.idle = True
    assert receiver.receive() is None
    assert sqs.waits == [("q-wake", 5), ("q-high", 1), ("q", 1), ("q-low", 1)]


def test_a_hint_for_a_priority_an_old_runtime_has_no_queue_for_asks_its_one_queue_with_a_wait() -> None:
    sqs = HintingSqs('{"priority": "high"}')
    old = SimpleNamespace(priority_queues={"normal": "q"}, wake_url="q-wake")
    receiver = PriorityReceiver(sqs, old, TrainingSettings())  # type: ignore[arg-type]
    receiver.idle = True
    assert receiver.receive() is None
    assert sqs.waits == [("q-wake", 20), ("q", 1)]


class BlockingSqs(HintingSqs):
    """The wake queue's long poll blocks until ``release`` is set, then hands out a hint."""

    def __init__(self) -> None:
        super().__init__('{"priority": "high"}')
        self.release, self.returned = threading.Event(), threading.Event()

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.release.wait(30)
        answer = super().receive_message(**request)
        self.returned.set()
        return answer


def test_a_stop_ends_an_idle_agents_wait_at_once_and_leaves_the_hint_for_another_agent() -> None:
    sqs, stopping = BlockingSqs(), threading.Event()
    stopping.set()
    receiver = PriorityReceiver(sqs, WAKE_RUNTIME, TrainingSettings(), interrupted=stopping.is_set)  # type: ignore[arg-type]
    receiver.idle = True
    assert receiver.receive() is None, "returned while the long poll still blocks"
    assert not sqs.returned.is_set() and sqs.waits == []
    sqs.release.set()   # the abandoned poll now gets a hint
    for poll in [t for t in threading.enumerate() if t.name == "wake-poll"]:
        poll.join(10)
    assert sqs.returned.is_set()
    assert sqs.waits == [("q-wake", 20)] and sqs.deleted == [], "no queue asked, the hint not deleted"


def test_an_agent_with_one_queue_asks_only_that_queue() -> None:
    turns = QueueTurns(priorities=("normal",))
    turns.took("normal")
    assert turns.order() == ["normal"]
    with pytest.raises(ValueError, match="guard_rounds"):
        QueueTurns(guard_rounds=0)


def test_job_spec_priority_defaults_to_normal_and_rejects_other_values_in_one_line() -> None:
    assert parse_job_spec(SPEC).priority == "normal"
    assert parse_job_spec({**SPEC, "priority": "high"}).priority == "high"
    with pytest.raises(UserInputError) as err:
        parse_job_spec({**SPEC, "priority": "urgent"}, "job.yaml")
    (problem,) = err.value.problems
    assert problem.startswith("job.yaml: priority: ") and "(one of high, normal, low" in problem


def test_queue_positions_follow_the_rule_and_skip_jobs_not_waiting() -> None:
    def job(job_id: str, status: str, priority: str | None, created: str) -> dict[str, object]:
        spec = {"priority": priority} if priority else {}
        return {"job_id": job_id, "status": status, "spec": spec, "created_at": created}

    jobs = [job("n1", "QUEUED", None, "2026-01-01T00:00:01"), job("n2", "QUEUED", "normal", "2026-01-01T00:00:02"),
            job("run", "RUNNING", "high", "2026-01-01T00:00:00"), job("h1", "QUEUED", "high", "2026-01-01T00:00:09"),
            job("l1", "QUEUED", "low", "2026-01-01T00:00:00"),
            {**job("i1", "INTERRUPTED", "normal", "2026-01-01T00:00:00"), "interrupted_at": "2026-01-01T00:00:05"}]
    assert queue_positions(jobs) == {"h1": 1, "n1": 2, "n2": 3, "i1": 4, "l1": 5}
