"""What the CLI does with jobs after submitting them: list, status, cancel, logs."""

from __future__ import annotations

from gpufleet.aws import AwsClients
from gpufleet.errors import UserInputError
from gpufleet.schema import JOB_FINAL
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.jobs import Record, get_job, scan_jobs, update_job

CANCELLABLE = ("QUEUED", "RUNNING", "INTERRUPTED")


def list_jobs(clients: AwsClients, runtime: TeamRuntime, status: str | None = None) -> list[Record]:
    """Jobs newest first, optionally only those in ``status``."""
    jobs = [j for j in scan_jobs(clients, runtime) if status is None or j.get("status") == status]
    return sorted(jobs, key=lambda j: str(j.get("created_at", "")), reverse=True)


def job_status(clients: AwsClients, runtime: TeamRuntime, job_id: str) -> Record:
    job = get_job(clients, runtime, job_id)
    if job is None:
        raise UserInputError([f"job {job_id}: no such job in team {runtime.team} "
                              "(list them with `gpufleet job list`)"])
    return job


def cancel_job(clients: AwsClients, runtime: TeamRuntime, job_id: str) -> Record:
    """Mark the job CANCELLED; the agent running it stops it at its next heartbeat."""
    job = job_status(clients, runtime, job_id)
    if job["status"] in JOB_FINAL:
        raise UserInputError([f"job {job_id}: already {job['status']} (nothing to cancel)"])
    if not update_job(clients, runtime, job_id, {"status": "CANCELLED", "reason": "cancelled by user"},
                      expect_status=CANCELLABLE):
        return cancel_job(clients, runtime, job_id)   # it moved meanwhile: decide again on the new status
    return job_status(clients, runtime, job_id)




def job_logs(clients: AwsClients, runtime: TeamRuntime, job_id: str) -> dict[str, str]:
    """Each host's log of the job, as uploaded so far (the agent uploads every few seconds)."""
    job_status(clients, runtime, job_id)
    prefix = f"jobs/{job_id}/"
    out: dict[str, str] = {}
    pages = clients.s3.get_paginator("list_objects_v2").paginate(Bucket=runtime.buckets.logs, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            host = obj["Key"][len(prefix):].removesuffix(".log")
            body = clients.s3.get_object(Bucket=runtime.buckets.logs, Key=obj["Key"])["Body"].read()
            out[host] = body.decode(errors="replace")
    return out
