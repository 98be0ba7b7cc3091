"""The SageMaker HTTP contract as a raw ASGI app: ``GET /ping``, ``POST /invocations``, ``GET /metrics``.
Models run in this process (a handler and its batcher), or in their own container (an endpoint's
``image:``), to which ``/invocations`` is forwarded.

Raw ASGI rather than Starlette routing and Request/Response objects: the hot path is a dict lookup,
the body read, the handler and one ``send`` pair. Errors are values with a request id, never a
traceback to the client, and no handler failure stops the server.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

from gpufleet.agent.serving import codecs
from gpufleet.agent.serving.batching import BatcherClosed
from gpufleet.agent.serving.capture import DataCapture
from gpufleet.agent.serving.container import (
    CUSTOM_ATTRIBUTES,
    CUSTOM_ATTRIBUTES_MAX,
    ContainerAnswer,
    ContainerCallFailed,
    custom_attributes_problem,
)
from gpufleet.agent.serving.metrics import ServingMetrics
from gpufleet.agent.serving.models import ContainerModel, LoadedModel, ModelSlot

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
JSON = b"application/json"
_CUSTOM_ATTRIBUTES = CUSTOM_ATTRIBUTES.lower().encode()   # ASGI header names are lower case


@dataclass
class Limits:
    max_payload_bytes: int
    request_timeout_s: float


class HealthState:
    """What ``/ping`` says besides "a model is loaded": a GPU fault or shutdown makes it 503."""

    def __init__(self) -> None:
        self.problem: str | None = None

    def fail(self, problem: str) -> None:
        self.problem = self.problem or problem


class RequestFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _expire(future: asyncio.Future[Any], seconds: float) -> None:
    if not future.done():
        future.set_exception(RequestFailed(504, f"request: no answer within {seconds:g} s "
                                                "(raise serving.request_timeout_s or send less)"))


class ServingApp:
    def __init__(self, slot: ModelSlot, metrics: ServingMetrics, limits: Limits,
                 health: HealthState | None = None, capture: DataCapture | None = None,
                 gpu_status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.slot, self.metrics, self.limits = slot, metrics, limits
        self.health = health or HealthState()
        self.capture = capture
        self.gpu_status = gpu_status or (lambda: {"status": "unavailable", "reason": "not sampled"})
        self._ids = count(1)
        self._id_prefix = secrets.token_hex(4)
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/invocations":
            if method == "POST":
                await self._invoke(scope, receive, send)
            else:
                await _respond(send, 405, b'{"error": "use POST /invocations"}')
        elif path == "/ping":
            problem = await self._ping_problem()
            await _respond(send, 503 if problem else 200, json.dumps({"error": problem}).encode() if problem else b"")
        elif path == "/metrics":
            body = self.metrics.render(self.slot.identity(), self.gpu_status(),
                                       {"gpufleet_requests_in_flight": self.in_flight,
                                        "gpufleet_capture_dropped_total":
                                            self.capture.dropped if self.capture else 0})
            await _respond(send, 200, body, b"text/plain; version=0.0.4")
        else:
            await _respond(send, 404, b'{"error": "not found (use /invocations, /ping or /metrics)"}')

    async def _ping_problem(self) -> str | None:
        """Why ``/ping`` is not 200, or None: the agent's own health, then its model's (a container's
        ``/ping``)."""
        model = self.slot.current
        if self.health.problem or model is None:
            return self.health.problem or "no model loaded yet"
        if isinstance(model, ContainerModel) and not await model.container.ping():
            return f"container {model.container.name}: /ping is not answering 200"
        return None

    async def _invoke(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request_id = f"{self._id_prefix}-{next(self._ids):x}".encode()
        content_type = accept = custom_attributes = None
        answered_attributes: bytes | None = None
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == _CUSTOM_ATTRIBUTES:
                custom_attributes = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
        model = self.slot.acquire()
        self.in_flight += 1
        try:
            if model is None:
                raise RequestFailed(503, "endpoint: no model loaded yet (retry after /ping returns 200)")
            body = await self._read_body(receive, length)
            if isinstance(model, ContainerModel):
                answer = await self._forward(model, body, content_type, accept, custom_attributes)
                status, out, out_type = answer.status, answer.body, answer.content_type
                answered_attributes = answer.custom_attributes
            else:
                status, out, out_type = await self._predict(model, body, content_type, accept)
        except RequestFailed as exc:
            status, out_type = exc.status, JSON
            out = json.dumps({"error": exc.message, "request_id": request_id.decode()}).encode()
        finally:
            self.in_flight -= 1
            if model is not None:
                self.slot.release(model)
        headers = [(b"content-type", out_type), (b"content-length", b"%d" % len(out)),
                   (b"x-amzn-requestid", request_id)]
        if model is not None:
            headers.append((b"x-gpufleet-model", model.label))
        if answered_attributes is not None:
            headers.append((_CUSTOM_ATTRIBUTES, answered_attributes))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})
        self.metrics.request_done(status, time.perf_counter() - start)
        capture = self.capture
        if status == 200 and model and capture and random.random() < capture.fraction:
            capture.offer(model, request_id.decode(), body, content_type, out, out_type.decode())

    async def _read_body(self, receive: Receive, length: int) -> bytes:
        limit = self.limits.max_payload_bytes
        too_big = RequestFailed(413, f"body: larger than {limit} bytes (send fewer rows per request)")
        if length > limit:
            raise too_big
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestFailed(499, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _forward(self, model: ContainerModel, body: bytes, content_type: str | None, accept: str | None,
                       custom_attributes: bytes | None) -> ContainerAnswer:
        if custom_attributes is not None and (problem := custom_attributes_problem(custom_attributes)):
            raise RequestFailed(400, f"{CUSTOM_ATTRIBUTES}: {problem} (send at most {CUSTOM_ATTRIBUTES_MAX} "
                                     "visible US-ASCII characters, as SageMaker's InvokeEndpoint takes)")
        attributes = custom_attributes.decode("ascii") if custom_attributes is not None else None
        try:
            return await model.container.invoke(body, content_type, accept, attributes,
                                                 self.limits.request_timeout_s)
        except ContainerCallFailed as exc:
            raise RequestFailed(exc.status, exc.message) from None

    async def _predict(self, model: LoadedModel, body: bytes, content_type: str | None,
                       accept: str | None) -> tuple[int, bytes, bytes]:
        handler = model.handler
        try:
            accept_type = codecs.requested_accept(accept) if handler.custom else codecs.choose_accept(accept)
            media_type = codecs.media_type(content_type)
            data = handler.input_fn(body, media_type)
        except codecs.UnsupportedAccept as exc:
            raise RequestFailed(406, str(exc)) from None
        except codecs.UnsupportedContentType as exc:
            raise RequestFailed(415, str(exc)) from None
        except Exception as exc:   # input_fn's job is parsing client input: its failures are bad input
            raise RequestFailed(400, _message(exc, "body: could not be decoded")) from None
        future = model.batcher.submit(data)
        # An unbatched request that ran inline is answered already: no timer to arm and cancel (3.4 us of
        # the ~230 us a tiny model's request costs).
        timer = None if future.done() else asyncio.get_running_loop().call_later(
            self.limits.request_timeout_s, _expire, future, self.limits.request_timeout_s)
        try:
            prediction = await future
        except RequestFailed:
            raise
        except BatcherClosed as exc:
            raise RequestFailed(503, str(exc)) from None
        except codecs.BadPayload as exc:
            raise RequestFailed(400, str(exc)) from None
        except Exception as exc:
            raise RequestFailed(500, _message(exc, "predict_fn failed")) from None
        finally:
            if timer is not None:
                timer.cancel()
        try:
            out, out_type = handler.encode(prediction, accept_type)
        except codecs.UnsupportedAccept as exc:
            raise RequestFailed(406, str(exc)) from None
        except Exception as exc:
            raise RequestFailed(500, _message(exc, "output_fn failed")) from None
        self.slot.warmup_sample = (body, media_type, accept_type)
        return 200, out, out_type.encode()


def _message(exc: Exception, where: str) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return text if isinstance(exc, ValueError) and text else f"{where}: {type(exc).__name__}: {text}"


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
