"""Ship the job's log: the whole file to ``s3://<logs>/jobs/<job_id>/<host>.log`` whenever it grew, and
new lines to CloudWatch Logs when a log group is configured (the team stack's, from the runtime)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.store.jobs import log_key

log = logging.getLogger("gpufleet.agent.logship")
# CloudWatch Logs PutLogEvents quotas: a batch holds at most 10,000 events and 1,048,576 bytes, counted as
# each message's UTF-8 size plus 26 bytes; one event is at most 256 KiB (262,144 bytes, the 26 included).
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD
# A raw chunk of the file becomes one event; decoding may turn an invalid byte into U+FFFD (3 bytes), so a
# chunk is a third of the event limit at most when it holds invalid bytes (checked after decoding).
Event = tuple[str, int]   # (message, offset in the data just after it)


def _utf8_cut(raw: bytes, limit: int) -> int:
    """An index <= limit that does not split a UTF-8 sequence."""
    if len(raw) <= limit:
        return len(raw)
    cut = limit
    while cut > 0 and (raw[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut or limit


def log_events(data: bytes) -> Iterator[Event]:
    """Whole lines of ``data`` as messages, lines longer than an event split into several."""
    offset = 0
    for line in data.splitlines(keepends=True):
        body, end = line.rstrip(b"\r\n"), offset + len(line)
        pos = 0
        while True:
            cut = pos + _utf8_cut(body[pos:], MAX_EVENT_BYTES)
            text = body[pos:cut].decode("utf-8", errors="replace")
            if len(text.encode()) > MAX_EVENT_BYTES:   # invalid bytes grew when replaced: take less
                cut = pos + MAX_EVENT_BYTES // 3
                text = body[pos:cut].decode("utf-8", errors="replace")
            pos = cut
            yield text or " ", (offset + pos if pos < len(body) else end)
            if pos >= len(body):
                break
        offset = end


def log_batches(events: Iterator[Event]) -> Iterator[list[Event]]:
    """Events grouped into batches PutLogEvents accepts."""
    batch: list[Event] = []
    size = 0
    for message, end in events:
        event_size = len(message.encode()) + EVENT_OVERHEAD
        if batch and (len(batch) == MAX_BATCH_EVENTS or size + event_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((message, end))
        size += event_size
    if batch:
        yield batch


class LogShipper:
    def __init__(self, clients: AwsClients, path: Path, bucket: str, job_id: str, host: str,
                 log_group: str | None = None) -> None:
        self.clients, self.path, self.bucket = clients, path, bucket
        self.key = log_key(job_id, host)
        self.log_group, self.stream = log_group, f"{job_id}/{host}"
        self._shipped_size = -1
        self._cw_offset = 0
        self._cw_ready = False

    def flush(self) -> None:
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size != self._shipped_size:
            self.clients.s3.upload_file(str(self.path), self.bucket, self.key)
            self._shipped_size = size
        if self.log_group:
            self._flush_cloudwatch(self.clients.client("logs"))

    def _flush_cloudwatch(self, logs: Any) -> None:
        if not self._cw_ready:
            # The team stack owns the group (encrypted, retained); hosts may only add streams to it.
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_stream(logGroupName=self.log_group, logStreamName=self.stream)
            self._cw_ready = True
        with self.path.open("rb") as f:
            f.seek(self._cw_offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]   # only whole lines; the rest waits for the next flush
        if not complete:
            return
        now_ms = int(time.time() * 1000)
        start = self._cw_offset
        for batch in log_batches(log_events(complete)):
            events = [{"timestamp": now_ms, "message": message} for message, _ in batch]
            try:
                logs.put_log_events(logGroupName=self.log_group, logStreamName=self.stream, logEvents=events)
            except logs.exceptions.InvalidParameterException as exc:
                # The service refuses this batch as it is: sending it again would fail forever. The S3 copy
                # of the log keeps every line; skip these in CloudWatch.
                log.warning("CloudWatch Logs refused %d event(s) of %s: %s", len(events), self.stream, exc)
            # Advance past each accepted batch, so that a failure later sends only what is left (no duplicates).
            self._cw_offset = start + batch[-1][1]
