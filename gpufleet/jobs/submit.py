"""``submit_job``: package a local directory as ``code/<job_id>/source.tar.gz``, put the job QUEUED and
send ``{job_id}`` to the team queue of the spec's priority (one message per host for multi-node jobs).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import secrets
import tarfile
import time
from pathlib import Path

from gpufleet.aws import AWS_ERRORS, AwsClients
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.schema.job_spec import JobSpec
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.dynamo import now_iso
from gpufleet.store.jobs import put_new_job, update_job
from gpufleet.store.wake import wake_agents

log = logging.getLogger("gpufleet.jobs")

_SKIP = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints"}
MAX_SOURCE_BYTES = 512 * 1024 * 1024


def new_job_id(name: str) -> str:
    return f"{name[:40]}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def package_source(source_dir: Path) -> bytes:
    """A reproducible tarball of ``source_dir`` (sorted, zeroed owners and times): the same code gives
    the same bytes, so its sha256 in the lineage identifies the code."""
    if not source_dir.is_dir():
        raise UserInputError([f"{source_dir}: not a directory (pass the folder holding the entry point)"])
    buf = io.BytesIO()
    # gzip stamps the compression time in its header unless told not to.
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(source_dir.rglob("*")):
            rel = path.relative_to(source_dir)
            if _SKIP & set(rel.parts) or path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            info = tar.gettarinfo(str(path), arcname=rel.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if buf.tell() > MAX_SOURCE_BYTES:
                raise UserInputError([f"{source_dir}: source over {MAX_SOURCE_BYTES >> 20} MiB "
                                      "(put data in a channel, not in the code)"])
    return buf.getvalue()


def submit_job(clients: AwsClients, runtime: TeamRuntime, spec: JobSpec, source_dir: Path | None = None) -> str:
    """Validate against the team, upload the code, record the job QUEUED, enqueue it. Returns the job id."""
    if spec.team != runtime.team:
        raise UserInputError([f"job spec: team: {spec.team!r} is not this runtime's team {runtime.team!r} "
                              "(set team, or use that team's runtime config)"])
    job_id = new_job_id(spec.name)
    updates: dict[str, object] = {}
    if source_dir is not None:
        if spec.entry_point and not (source_dir / spec.entry_point).is_file():
            raise UserInputError([f"{source_dir}: no entry point {spec.entry_point} (fix entry_point)"])
        body = package_source(source_dir)
        key = f"code/{job_id}/source.tar.gz"
        clients.s3.put_object(Bucket=runtime.buckets.artifacts, Key=key, Body=body,
                              Metadata={"sha256": hashlib.sha256(body).hexdigest()})
        updates["source"] = f"s3://{runtime.buckets.artifacts}/{key}"
    elif spec.source is None and spec.image is None:
        raise UserInputError(["job spec: source: missing (give an s3:// URI or a local directory to package)"])
    if spec.checkpoint_uri is None:
        updates["checkpoint_uri"] = f"s3://{runtime.buckets.checkpoints}/{job_id}/"
    spec = spec.model_copy(update=updates)
    now = now_iso()
    put_new_job(clients, runtime, {"job_id": job_id, "name": spec.name, "status": "QUEUED", "attempts": 0,
                                   "spec": spec.model_dump(mode="json", exclude_none=True),
                                   "created_at": now, "updated_at": now})
    try:
        for _ in range(spec.instance_count):
            clients.sqs.send_message(QueueUrl=runtime.queue_for(spec.priority),
                                     MessageBody=json.dumps({"job_id": job_id}))
    except AWS_ERRORS as exc:
        update_job(clients, runtime, job_id, {"status": "FAILED", "reason": f"enqueue failed: {exc}"},
                   expect_status=["QUEUED"])
        raise RuntimeFailure("submit", f"the team's {spec.priority} queue refused job {job_id} ({exc})",
                             "check the queue and resubmit") from None
    if why := wake_agents(clients.sqs, runtime, spec.priority, count=spec.instance_count):
        log.warning("job %s is queued, but the wake-up hint failed (%s): an idle agent finds it on its next "
                    "sweep, within training.wake_wait_s", job_id, why)
    return job_id
