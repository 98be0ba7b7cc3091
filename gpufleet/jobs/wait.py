"""Following a job until it ends (``job submit --wait`` and the demo)."""

from __future__ import annotations

from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from gpufleet.errors import RuntimeFailure
from gpufleet.schema import JOB_FINAL
from gpufleet.teams import TeamContext


def wait_for_job(ctx: TeamContext, job_id: str, timeout_s: float, report: Any = None) -> dict[str, Any]:
    """Poll the job until it ends; RuntimeFailure unless it SUCCEEDED."""
    from gpufleet.jobs.ops import job_status

    seen: list[dict[str, Any]] = []

    def read() -> dict[str, Any]:
        record = job_status(ctx.aws, ctx.runtime, job_id)
        if report and (not seen or record["status"] != seen[-1]["status"]):
            report(record)
        seen.append(record)
        return record

    Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(1.0), retry_error_callback=lambda _: None,
             retry=retry_if_result(lambda r: r["status"] not in JOB_FINAL))(read)
    record = seen[-1]
    if record["status"] not in JOB_FINAL:
        raise RuntimeFailure(f"job {job_id}", f"still {record['status']} after {timeout_s:.0f} s",
                             f"check `gpufleet fleet status` and `gpufleet job logs {job_id}`")
    if record["status"] != "SUCCEEDED":
        raise RuntimeFailure(f"job {job_id}", f"{record['status']}: {record.get('reason', 'no reason')}",
                             f"read `gpufleet job logs {job_id}`")
    return dict(record)
