"""An idle agent's wait for work: one long poll on the team's wake queue (``gpufleet/store/wake.py``).

The poll runs in a daemon thread while the caller checks ``interrupted`` every ``TICK_S``, so a stop or a spot
notice ends the wait at once rather than after up to ``wake_wait_s`` (20 s). A thread per wait, not a pool:
an executor's worker is joined at interpreter exit and would hold a stopping agent for the rest of its poll.
A poll abandoned this way leaves its hint undeleted; it becomes visible again for another agent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gpufleet.schema.priority import PRIORITIES, Priority
from gpufleet.store.wake import parse_hint

TICK_S = 0.2
# Hidden this long from other agents once received; deleted at once by a live agent, so only an abandoned
# poll's hint waits this out.
HINT_VISIBILITY_S = 5


class WakeListener:
    def __init__(self, sqs: Any, url: str, wait_s: int, interrupted: Callable[[], bool]) -> None:
        self.sqs, self.url, self.wait_s, self.interrupted = sqs, url, wait_s, interrupted

    def wait(self) -> frozenset[Priority] | None:
        """The priorities to ask with a wait: the hinted one (all for a hint naming none); none after ``wait_s``
        without a hint, so that the sweep for jobs whose hint was lost takes milliseconds, not a round of waits
        during which a new job would wait its turn. None when interrupted."""
        outcome: list[frozenset[Priority] | BaseException] = []
        done = threading.Event()

        def poll() -> None:
            try:
                outcome.append(self._receive())
            except BaseException as exc:  # re-raised in the caller's thread, which handles AWS errors
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=poll, name="wake-poll", daemon=True).start()
        while not done.wait(TICK_S):
            if self.interrupted():
                return None
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _receive(self) -> frozenset[Priority]:
        messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, WaitTimeSeconds=self.wait_s,
                                            VisibilityTimeout=HINT_VISIBILITY_S).get("Messages", [])
        if not messages or self.interrupted():   # interrupted: abandoned meanwhile, the hint left for another agent
            return frozenset()
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=messages[0]["ReceiptHandle"])
        hinted = parse_hint(messages[0].get("Body", ""))
        return frozenset((hinted,)) if hinted else frozenset(PRIORITIES)
