"""A fault-injecting HTTP proxy in front of the emulated AWS (test support).

Point a client's AWS endpoint URL at ``FaultProxy.url``: every request is forwarded to the emulator until
a fault is injected. Faults apply to the requests a rule matches (all of them by default):

- ``throttle(seconds)``: answer without forwarding, alternating AWS's throttling error (HTTP 400
  ``ThrottlingException`` / ``Throttling``; S3 ``SlowDown`` and EC2 ``RequestLimitExceeded`` with their
  503) and a ``ServiceUnavailable`` 503, each in the error shape of the request's protocol (JSON 1.0/1.1,
  Smithy RPC v2 CBOR, query XML, EC2 XML, S3 REST XML), so botocore and the Terraform AWS provider parse and
  retry them as they would on AWS.
- ``drop_response(action, times)``: forward the request, let the emulator answer, then close the
  connection without answering: the write happened, the client saw a network error (and an SDK retries).
- ``stall(match, after_bytes)``: forward, send the answer's headers and its first ``after_bytes`` bytes,
  then hold the rest until ``heal()`` (a slow network in the middle of a download). The returned event is
  set once a response is held.

``heal()`` removes every rule and releases held responses. ``calls`` records what passed, per request:
its service (from the SigV4 credential scope: ``dynamodb``, ``monitoring``, ``s3``, ``ec2``...), its action
and what the proxy did with it (``forwarded``, ``throttled``, ``unavailable``, ``dropped``, ``stalled``).

    with FaultProxy(emulator.endpoint) as proxy:
        proxy.throttle(seconds=30)                                # everything, for 30 s
        proxy.drop_response("CreateLaunchTemplate", times=1)      # the first CreateLaunchTemplate's answer
        proxy.drop_response(match=first_of_each_write(), times=None)  # the first answer to every write
        proxy.heal()
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length"}
# JSON/CBOR services that once spoke the query protocol: botocore reads their error code from a header.
QUERY_COMPATIBLE = {"monitoring", "sqs"}
_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Call:
    """One request as the proxy saw it."""

    method: str
    path: str
    headers: Message
    body: bytes

    @property
    def service(self) -> str:
        """The SigV4 signing name (``monitoring`` for CloudWatch, ``s3``, ``dynamodb``, ...)."""
        match = _SCOPE.search(self.headers.get("Authorization", ""))
        return match[1] if match else ""

    @property
    def protocol(self) -> str:
        if self.headers.get("smithy-protocol") == "rpc-v2-cbor":
            return "cbor"
        if self.headers.get("X-Amz-Target"):
            return "json"
        if self.service == "s3":
            return "rest-xml"
        return "ec2" if self.service == "ec2" else "query"

    @property
    def action(self) -> str:
        """The operation: ``GetItem``, ``PutMetricData``, ``CreateLaunchTemplate``; ``METHOD /path`` for S3."""
        if self.protocol == "json":
            return self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        if self.protocol == "cbor":
            return self.path.rsplit("/operation/", 1)[-1]
        if self.protocol in ("query", "ec2"):
            form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            return (form.get("Action") or query.get("Action") or [""])[0]
        return f"{self.method} {urllib.parse.urlsplit(self.path).path}"


Match = Callable[[Call], bool]


@dataclass
class Rule:
    fault: str                      # "throttle" | "drop_response" | "stall"
    match: Match
    times: int | None = None        # how many more requests it applies to (None: until it ends)
    until: float | None = None      # a time.monotonic() deadline (None: until heal)
    after_bytes: int = 0            # stall: how much of the answer goes through first

    def applies(self, call: Call, now: float) -> bool:
        return (self.until is None or now < self.until) and self.times != 0 and self.match(call)


@dataclass(frozen=True)
class Record:
    service: str
    action: str
    outcome: str


@dataclass
class _State:
    rules: list[Rule] = field(default_factory=list)
    calls: list[Record] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    turn: itertools.count[int] = field(default_factory=itertools.count)


def _everything(call: Call) -> bool:
    return True


_READS = ("Describe", "Get", "List", "Head", "Query", "Scan", "Receive", "AssumeRole", "GET ", "HEAD ")


def first_of_each_write() -> Match:
    """Matches the first request of every distinct write: each operation that is not a read (by its name's
    verb; for S3, each method and sub-resource, e.g. ``PUT ?policy``), once per service."""
    seen: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def match(call: Call) -> bool:
        action = call.action
        if not action or action.startswith(_READS):
            return False
        if call.protocol == "rest-xml":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(call.path).query, keep_blank_values=True)
            action = f"{call.method} ?{','.join(sorted(query))}"
        with lock:
            if (call.service, action) in seen:
                return False
            seen.add((call.service, action))
            return True

    return match


class FaultProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.state = _State()
        self.server = ThreadingHTTPServer((host, 0), _handler_class(self.upstream, self.state))
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="faultproxy", daemon=True)
        self.thread.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.heal()
        self.server.shutdown()
        self.server.server_close()

    def _add(self, rule: Rule) -> None:
        with self.state.lock:
            self.state.released.clear()
            self.state.rules.append(rule)

    def throttle(self, seconds: float | None = None, match: Match | None = None) -> None:
        """Answer matching requests with throttling errors and 503s (alternately) for ``seconds``."""
        until = time.monotonic() + seconds if seconds is not None else None
        self._add(Rule("throttle", match or _everything, until=until))

    def drop_response(self, action: str | None = None, times: int | None = 1, match: Match | None = None) -> None:
        """Forward the next ``times`` requests for ``action`` (or ``match``) and close without answering."""
        chosen = match or (lambda call: action is None or call.action == action)
        self._add(Rule("drop_response", chosen, times=times))

    def stall(self, match: Match, after_bytes: int = 0) -> threading.Event:
        """Hold matching answers after ``after_bytes`` bytes until ``heal``; the event is set once one is held."""
        self.state.stalled.clear()
        self._add(Rule("stall", match, after_bytes=after_bytes))
        return self.state.stalled

    def heal(self) -> None:
        with self.state.lock:
            self.state.rules.clear()
            self.state.released.set()

    @property
    def calls(self) -> list[Record]:
        with self.state.lock:
            return list(self.state.calls)

    def count(self, outcome: str, service: str | None = None) -> int:
        return sum(1 for c in self.calls if c.outcome == outcome and (service is None or c.service == service))


def _handler_class(upstream: tuple[str, int], state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(_ProxyHandler):
        pass

    Handler.upstream, Handler.state = upstream, state
    return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as the SDKs' connection pools expect
    upstream: tuple[str, int]
    state: _State

    def log_message(self, format: str, *args: object) -> None:   # quiet: the test's output is the record
        pass

    def _proxy(self) -> None:
        call = Call(self.command, self.path, self.headers, self._read_body())
        rule = self._claim_rule(call)
        if rule is not None and rule.fault == "throttle":
            self._answer_fault(call)
            return
        try:
            status, reason, headers, body = self._forward(call)
        except OSError as exc:
            self._record(call, "upstream_failed")
            self.send_error(502, f"fault proxy: upstream unreachable ({exc})")
            return
        if rule is not None and rule.fault == "drop_response":
            self._record(call, "dropped")
            self.close_connection = True
            return
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            self._record(call, "forwarded")
            return
        if rule is not None and rule.fault == "stall":
            self._stall(call, body, rule.after_bytes)
            return
        self._record(call, "forwarded")
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _proxy

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass   # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _claim_rule(self, call: Call) -> Rule | None:
        now = time.monotonic()
        with self.state.lock:
            for rule in self.state.rules:
                if rule.applies(call, now):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _forward(self, call: Call) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            headers = {k: v for k, v in call.headers.items() if k.lower() not in HOP_BY_HOP}
            if call.body or call.method in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(call.body))
            conn.request(call.method, call.path, body=call.body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            conn.close()

    def _answer_fault(self, call: Call) -> None:
        unavailable = next(self.state.turn) % 2 == 1
        status, headers, body = fault_response(call, unavailable)
        self._record(call, "unavailable" if unavailable else "throttled")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stall(self, call: Call, body: bytes, after_bytes: int) -> None:
        self._record(call, "stalled")
        try:
            self.wfile.write(body[:after_bytes])
            self.wfile.flush()
            self.state.stalled.set()
            self.state.released.wait()
            self.wfile.write(body[after_bytes:])
        except OSError:   # the client went away while held (killed): nothing more to send
            self.close_connection = True

    def _record(self, call: Call, outcome: str) -> None:
        with self.state.lock:
            self.state.calls.append(Record(call.service, call.action, outcome))


def fault_response(call: Call, unavailable: bool) -> tuple[int, dict[str, str], bytes]:
    """AWS's answer for a throttled (or, with ``unavailable``, a 503) request, in the request's protocol."""
    request_id = "fault-proxy-0000"
    protocol = call.protocol
    if protocol in ("json", "cbor"):
        code = "ServiceUnavailable" if unavailable else "ThrottlingException"
        status = 503 if unavailable else 400
        headers = {"x-amzn-RequestId": request_id}
        if call.service in QUERY_COMPATIBLE:   # they send the query protocol's error code alongside
            headers["x-amzn-query-error"] = "ServiceUnavailable;Receiver" if unavailable else "Throttling;Sender"
        message = "Service unavailable" if unavailable else "Rate exceeded"
        if protocol == "json":
            version = call.headers.get("Content-Type", "application/x-amz-json-1.0")
            return status, {**headers, "Content-Type": version}, json.dumps(
                {"__type": f"com.amazonaws.fault#{code}", "message": message}).encode()
        return status, {**headers, "Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}, \
            _cbor_map({"__type": code, "message": message})
    if protocol == "rest-xml":   # S3 throttles with 503 SlowDown
        code, status = ("ServiceUnavailable", 503) if unavailable else ("SlowDown", 503)
        return status, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>Please reduce your "
            f"request rate.</Message><RequestId>{request_id}</RequestId></Error>").encode()
    if protocol == "ec2":        # EC2 throttles with 503 RequestLimitExceeded
        code = "Unavailable" if unavailable else "RequestLimitExceeded"
        return 503, {"Content-Type": "text/xml"}, (
            f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code><Message>"
            f"Request limit exceeded.</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
    code, kind, status = (("ServiceUnavailable", "Receiver", 503) if unavailable else ("Throttling", "Sender", 400))
    return status, {"Content-Type": "text/xml"}, (
        f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>Rate exceeded</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()


def _cbor_map(items: dict[str, str]) -> bytes:
    """A CBOR map of text strings: all an RPC v2 CBOR error body needs."""
    def head(major: int, length: int) -> bytes:
        if length < 24:
            return bytes([major << 5 | length])
        if length < 256:
            return bytes([major << 5 | 24, length])
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")

    out = bytearray(head(5, len(items)))
    for key, value in items.items():
        for text in (key.encode(), value.encode()):
            out += head(3, len(text)) + text
    return bytes(out)
