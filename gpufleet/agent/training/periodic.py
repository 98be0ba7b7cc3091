"""A background thread that calls a function every few seconds until stopped. A failing call is logged
and retried at the next tick: a flaky upload must not end a job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("gpufleet.agent.periodic")


class Every(threading.Thread):
    def __init__(self, interval_s: float, fn: Callable[[], object], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s, self.fn = interval_s, fn
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.fn()
            except Exception:
                log.exception("periodic task failed", extra={"task": self.name})

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
