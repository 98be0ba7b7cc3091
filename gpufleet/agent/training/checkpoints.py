"""Keep the local checkpoint folder and its S3 prefix in step.

``restore`` pulls what S3 has before the job starts (a resumed job sees its last checkpoint);
``sync`` uploads only files whose size or mtime changed since they were last uploaded or restored.
Files are never deleted in S3: a script that rotates checkpoints keeps its older ones there.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from gpufleet.aws import AwsClients

log = logging.getLogger("gpufleet.agent.checkpoints")
FileState = tuple[int, int]   # (size, mtime_ns)


class CheckpointSync:
    def __init__(self, clients: AwsClients, local_dir: Path, bucket: str, prefix: str) -> None:
        self.clients, self.local_dir, self.bucket, self.prefix = clients, local_dir, bucket, prefix
        self._uploaded: dict[str, FileState] = {}
        self._lock = threading.Lock()   # the periodic and the final sync never interleave
        self.uploads = 0

    def _state(self, path: Path) -> FileState:
        st = path.stat()
        return st.st_size, st.st_mtime_ns

    def restore(self) -> int:
        """Download the checkpoint prefix into the local folder; returns the number of files."""
        count = 0
        pages = self.clients.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix):]
                target = (self.local_dir / rel).resolve()
                if not rel or rel.endswith("/") or self.local_dir.resolve() not in target.parents:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                self.clients.s3.download_file(self.bucket, obj["Key"], str(target))
                self._uploaded[rel] = self._state(target)
                count += 1
        return count

    def sync(self) -> int:
        """Upload changed files; returns how many were uploaded."""
        with self._lock:
            uploaded = 0
            for path in sorted(p for p in self.local_dir.rglob("*") if p.is_file() and not p.is_symlink()):
                rel = path.relative_to(self.local_dir).as_posix()
                try:
                    state = self._state(path)
                except FileNotFoundError:      # the script replaced it while we walked
                    continue
                if self._uploaded.get(rel) == state:
                    continue
                try:
                    self.clients.s3.upload_file(str(path), self.bucket, self.prefix + rel)
                except FileNotFoundError:
                    continue
                self._uploaded[rel] = state
                uploaded += 1
            self.uploads += uploaded
            if uploaded:
                log.info("checkpoints synced", extra={"files": uploaded, "prefix": f"s3://{self.bucket}/{self.prefix}"})
            return uploaded
