"""An HTTP/1.1 client to one serving container on loopback, on the serving loop: asyncio streams and h11
(uvicorn's own HTTP/1.1 parser, so nothing new to install), with kept-alive connections.

Not httpx: importing it loads rich and click wherever they are installed, and a GPU host's agent loads
neither (tests/foundation/test_layers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import h11

MAX_IDLE = 64
_READ = 1 << 16


class UpstreamError(Exception):
    """No complete answer: the container refused, closed or garbled the connection."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]   # lower-case names
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        self.protocol = h11.Connection(h11.CLIENT)

    async def exchange(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        p = self.protocol
        events: list[h11.Event] = [h11.Request(method=method, target=target, headers=[
            ("host", self.host), ("content-length", str(len(body))), *headers])]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        self.writer.write(b"".join(p.send(e) or b"" for e in events))
        await self.writer.drain()
        response: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            event = p.next_event()
            if event is h11.NEED_DATA:
                p.receive_data(await self.reader.read(_READ))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("the container closed the connection")
        assert response is not None   # h11 yields EndOfMessage only after a Response
        return Answer(response.status_code, {bytes(k): bytes(v) for k, v in response.headers}, b"".join(chunks))

    @property
    def reusable(self) -> bool:
        return self.protocol.our_state is h11.DONE and self.protocol.their_state is h11.DONE

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Upstream:
    """Requests to ``127.0.0.1:port``, reusing idle connections; use on one event loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[_Connection] = []

    async def request(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
                      body: bytes = b"") -> Answer:
        """Raises UpstreamError. A kept-alive connection that fails is retried once on a new connection:
        the container may have closed it while it was idle."""
        if self.idle:
            with contextlib.suppress(UpstreamError):
                return await self._exchange(self.idle.pop(), method, target, headers or [], body)
        return await self._exchange(await self._connect(), method, target, headers or [], body)

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect ({exc.strerror or exc})") from None
        return _Connection(reader, writer, f"127.0.0.1:{self.port}")

    async def _exchange(self, conn: _Connection, method: str, target: str, headers: list[tuple[str, str]],
                        body: bytes) -> Answer:
        try:
            answer = await conn.exchange(method, target, headers, body)
        except (OSError, h11.ProtocolError) as exc:
            conn.close()
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:   # cancelled (a timeout): the connection is mid-exchange, never reuse it
            conn.close()
            raise
        if conn.reusable and len(self.idle) < MAX_IDLE:
            conn.protocol.start_next_cycle()
            self.idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
