"""Data capture: a sampled share of requests and responses, written as JSON Lines to the team's capture
bucket at ``<endpoint>/<variant>/YYYY/MM/DD/HH/<uuid>.jsonl``.

The serving loop only does a ``put_nowait`` into a bounded queue; a writer thread batches records
into one object per flush. When S3 is slow and the queue is full, records are dropped and counted:
capture never blocks serving. Records follow SageMaker Model Monitor's capture format.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol


class _Model(Protocol):
    name: str
    version: int


class DataCapture:
    def __init__(self, s3: Any, bucket: str, endpoint: str, variant: str, percent: float,
                 queue_size: int = 1000, flush_interval_s: float = 5.0, max_records: int = 500) -> None:
        self.s3, self.bucket, self.endpoint, self.variant = s3, bucket, endpoint, variant
        self.fraction = percent / 100.0
        self.flush_interval_s, self.max_records = flush_interval_s, max_records
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.written = 0
        self.write_failures = 0
        self._thread = threading.Thread(target=self._write_loop, name="capture", daemon=True)
        self._thread.start()

    def offer(self, model: _Model, request_id: str, body: bytes, content_type: str | None,
              out: bytes, out_type: str) -> bool:
        record = {
            "captureData": {"endpointInput": _payload(body, content_type or "application/json", "INPUT"),
                            "endpointOutput": _payload(out, out_type, "OUTPUT")},
            "eventMetadata": {"eventId": request_id, "inferenceTime": time.time(),
                              "model": model.name, "version": model.version},
            "eventVersion": "0",
        }
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued and stop the writer (called on shutdown)."""
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _write_loop(self) -> None:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_interval_s
        while True:
            try:
                record = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                record = {}
            if record is None:
                self._flush(batch)
                return
            if record:
                batch.append(record)
            if len(batch) >= self.max_records or time.monotonic() >= deadline:
                self._flush(batch)
                batch = []
                deadline = time.monotonic() + self.flush_interval_s

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        now = datetime.now(UTC)
        key = f"{self.endpoint}/{self.variant}/{now:%Y/%m/%d/%H}/{uuid.uuid4()}.jsonl"
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in batch).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/jsonl")
            self.written += len(batch)
        except Exception:   # S3 trouble loses a capture batch, never a request
            self.write_failures += 1
            self.dropped += len(batch)


def _payload(data: bytes, content_type: str, mode: str) -> dict[str, str]:
    try:
        text, encoding = data.decode("utf-8"), "JSON" if "json" in content_type else "CSV"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(data).decode(), "BASE64"
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}
