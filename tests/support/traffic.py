"""Steady client traffic for rollout and hot-swap tests: an endpoint called in a loop on a thread while a
``with`` block runs. Each test's subclass says how to call and what to keep of an answer."""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, Self, TypeVar

T = TypeVar("T")


class Traffic(Generic[T]):
    """Calls ``url`` until the block ends; ``results`` holds what ``call`` returned, in order."""

    pause_s = 0.0   # between calls

    def __init__(self, url: str) -> None:
        self.url, self.results = url, list[T]()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def session(self) -> AbstractContextManager[Any]:
        """What every call shares (a client), opened on the traffic's thread."""
        return nullcontext()

    def call(self, session: Any) -> T:
        raise NotImplementedError

    def _run(self) -> None:
        with self.session() as session:
            while not self.stop.is_set():
                self.results.append(self.call(session))
                time.sleep(self.pause_s)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
