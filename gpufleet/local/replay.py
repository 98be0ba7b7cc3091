"""The emulator's answer to an SDK retry of a request it already answered: the same answer again.

Every AWS SDK (botocore, and the Go SDK inside the Terraform provider) tags all attempts of one operation with
one ``amz-sdk-invocation-id`` header. A second attempt with an ID the emulator has already answered means the
client lost that answer (a reset connection, a timeout on a loaded machine) and retried. Real AWS makes most
such repeats harmless; moto often does not (a second create fails with AlreadyExists, a second delete with a
NotFound the provider does not expect), which showed as one-in-many CI flakes in ever new places. Rather than
fix moto one operation at a time, the emulator replays its first successful answer, so the retry sees the
outcome of the write that did happen. An attempt that arrives while the first is still being answered waits for
it. Only 2xx answers are kept (an error is retried for real), each at most ``MAX_BODY`` bytes, the last
``CAPACITY`` of them. Listed in ``differences.py``.

Cost: one dict lookup per request and a copy of each answer's body; bodies above ``MAX_BODY`` (large S3
downloads) are streamed through untouched.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

CAPACITY = 4096
MAX_BODY = 1 << 20
INVOCATION = "HTTP_AMZ_SDK_INVOCATION_ID"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class _Answer:
    done: threading.Event = field(default_factory=threading.Event)
    status: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None  # None: not replayable (an error, too large, or still being answered)


class ReplayRetries:
    """WSGI middleware: answer a repeated ``amz-sdk-invocation-id`` with the first 2xx answer."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.answers: OrderedDict[str, _Answer] = OrderedDict()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        invocation = environ.get(INVOCATION)
        if not invocation:
            return self.app(environ, start_response)
        with self.lock:
            earlier = self.answers.get(invocation)
            if earlier is None:
                self.answers[invocation] = answer = _Answer()
                while len(self.answers) > CAPACITY:
                    self.answers.popitem(last=False)
        if earlier is not None:
            earlier.done.wait()
            if earlier.body is not None:
                start_response(earlier.status, earlier.headers)
                return [earlier.body]
            return self.app(environ, start_response)
        try:
            return self._answer(environ, start_response, answer)
        finally:
            answer.done.set()

    def _answer(self, environ: dict[str, Any], start_response: Callable[..., Any],
                answer: _Answer) -> Iterable[bytes]:
        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer.status, answer.headers = status, list(headers)
            return start_response(status, headers, exc_info)

        chunks = self.app(environ, keep)
        if not answer.status.startswith("2") or _length(answer.headers) > MAX_BODY:
            return chunks
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        answer.body = body
        return [body]


def _length(headers: list[tuple[str, str]]) -> int:
    """The declared Content-Length (0 when absent: moto's answers are bytes already in memory)."""
    for name, value in headers:
        if name.lower() == "content-length" and value.isdigit():
            return int(value)
    return 0
