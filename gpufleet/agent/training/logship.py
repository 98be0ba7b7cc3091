"""Ship the job's log: the whole file to ``s3://<logs>/jobs/<job_id>/<host>.log`` whenever it grew, and
new lines to CloudWatch Logs when a log group is configured (the team stack's, from the runtime)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.store.jobs import log_key

_CW_BATCH = 5000   # put_log_events takes at most 10,000 events


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
        events = [{"timestamp": now_ms, "message": line or " "}
                  for line in complete.decode("utf-8", errors="replace").splitlines()]
        for i in range(0, len(events), _CW_BATCH):
            logs.put_log_events(logGroupName=self.log_group, logStreamName=self.stream,
                                logEvents=events[i:i + _CW_BATCH])
        self._cw_offset += len(complete)
