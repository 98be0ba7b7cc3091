"""Training jobs: the spec, submission, and the operations the CLI wraps."""

from gpufleet.jobs.ops import cancel_job, job_logs, job_status, list_jobs
from gpufleet.jobs.submit import package_source, submit_job
from gpufleet.schema.job_spec import JobSpec, load_job_spec, parse_job_spec

__all__ = ["JobSpec", "cancel_job", "job_logs", "job_status", "list_jobs", "load_job_spec", "package_source",
           "parse_job_spec", "submit_job"]
