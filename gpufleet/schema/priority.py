"""Job priorities: one SQS queue per priority per team, and the rule that decides which queue a training
agent asks next. The agent runs the rule; ``gpufleet job list`` replays it to show queue positions.

The rule (one *round* = the receives that end with one job taken, or none):

- Queues are asked in priority order, high, normal, low: high drains first.
- Starvation guard: each queue counts the rounds in which a job was taken from a queue of higher
  priority (it was passed over). When a queue's count reaches ``guard_rounds`` it is *due*, and the
  next round asks the due queues first (the most passed over first; on a tie the lower priority),
  then the rest in priority order.
- A queue's count returns to 0 when a job is taken from it, or when it is asked and found empty.

So low waits behind at most ``guard_rounds`` jobs of higher priority, and normal behind at most
``guard_rounds`` high ones; high is never passed over. A high job behind any number of normal ones
still starts next (unless a low job is due at that moment: then it starts right after it), and a due
queue that is empty costs one extra receive, not a job. ``take_order`` replays the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal, TypeVar

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
DEFAULT_PRIORITY: Priority = "normal"
DEFAULT_GUARD_ROUNDS = 4
# SQS queue names as suffixes of the team's ``jobs`` name: normal keeps the name the single queue had,
# so an existing deployment keeps its queue and its messages.
QUEUE_SUFFIX: dict[Priority, str] = {"high": "-high", "normal": "", "low": "-low"}

T = TypeVar("T")


class QueueTurns:
    """The selection rule's state for one agent (see the module docstring)."""

    def __init__(self, guard_rounds: int = DEFAULT_GUARD_ROUNDS,
                 priorities: Sequence[Priority] = PRIORITIES) -> None:
        if guard_rounds < 1:
            raise ValueError("guard_rounds must be at least 1")
        self.guard_rounds = guard_rounds
        self.priorities = tuple(p for p in PRIORITIES if p in priorities)
        self.passed_over: dict[Priority, int] = dict.fromkeys(self.priorities, 0)

    def order(self) -> list[Priority]:
        """The queues to ask this round, first to last."""
        due = [p for p in reversed(self.priorities) if self.passed_over[p] >= self.guard_rounds]
        due.sort(key=lambda p: -self.passed_over[p])   # stable: ties keep the lower priority first
        return due + [p for p in self.priorities if p not in due]

    def found_empty(self, priority: Priority) -> None:
        self.passed_over[priority] = 0

    def took(self, priority: Priority) -> None:
        self.passed_over[priority] = 0
        for lower in self.priorities[self.priorities.index(priority) + 1:]:
            self.passed_over[lower] += 1


def take_order(waiting: Mapping[Priority, Iterable[T]], guard_rounds: int = DEFAULT_GUARD_ROUNDS) -> Iterator[T]:
    """The order in which one agent, starting fresh, takes ``waiting`` (each queue's items, oldest first)."""
    queues = {p: iter(waiting.get(p, ())) for p in PRIORITIES}
    turns = QueueTurns(guard_rounds)
    while queues:
        for priority in turns.order():
            item = next(queues[priority], None) if priority in queues else None
            if item is None:
                queues.pop(priority, None)
                turns.found_empty(priority)
                continue
            turns.took(priority)
            yield item
            break
