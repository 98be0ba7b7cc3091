"""Following a job until it ends (``job submit --wait`` and the demo)."""

from __future__ import annotations

import time
from typing import Any

from gpufleet.cli.team_context import TeamContext
from gpufleet.errors import RuntimeFailure
from gpufleet.schema import JOB_FINAL


def wait_for_job(ctx: TeamContext, job_id: str, timeout_s: float, report: Any = None) -> dict[str, Any]:
    """Poll the job until it ends; RuntimeFailure unless it SUCCEEDED."""
    from gpufleet.jobs.ops import job_status

    deadline, last = time.monotonic() + timeout_s, None
    while True:
        record = job_status(ctx.aws, ctx.runtime, job_id)
        if record["status"] != last and report:
            report(record)
        last = record["status"]
        if record["status"] in JOB_FINAL:
            if record["status"] != "SUCCEEDED":
                raise RuntimeFailure(f"job {job_id}", f"{record['status']}: {record.get('reason', 'no reason')}",
                                     f"read `gpufleet job logs {job_id}`")
            return dict(record)
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"job {job_id}", f"still {record['status']} after {timeout_s:.0f} s",
                                 f"check `gpufleet fleet status` and `gpufleet job logs {job_id}`")
        time.sleep(1.0)
