"""Job credentials, SageMaker execution-role style: the agent keeps the host role and hands job code
short-lived credentials of the team's job role, narrowed by a session policy to this job's prefixes.

The credentials reach the job through an AWS config file whose ``credential_process`` prints the current
session (JSON with its ``Expiration``); AWS SDKs and the CLI re-run it shortly before expiry, and the agent
rewrites the file before then, so long jobs never hold stale credentials. The host role's own variables
are removed from the job's environment and IMDS is switched off for the SDK (the firewall blocks it too).

Container jobs get the same session the same way: the credentials folder is bind-mounted read-only at
``CONTAINER_CREDENTIALS`` (a folder, not the file, so each rewrite shows through), with a second config
whose ``credential_process`` is ``cat`` of the session there (the image's own interpreter is unknown).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from gpufleet.schema.job_spec import JobSpec, split_s3_uri
from gpufleet.schema.runtime import TeamRuntime

log = logging.getLogger("gpufleet.agent.jobcreds")
HOST_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")
# Where a container job sees the credentials folder (outside SageMaker's /opt/ml layout).
CONTAINER_CREDENTIALS = "/opt/gpufleet/job-credentials"
REFRESH_AT = 0.5   # of the session's lifetime: SDKs ask again 15 min before expiry; be well ahead of them


def session_policy(runtime: TeamRuntime, spec: JobSpec, job_id: str, partition: str = "aws") -> dict[str, Any]:
    """What this job may do within the job role: read its channels, write its checkpoints and logs."""
    s3 = f"arn:{partition}:s3:::"
    reads = [f"{s3}{bucket}/{prefix}*" for bucket, prefix in map(split_s3_uri, spec.channels.values())]
    ckpt_bucket, ckpt_prefix = (split_s3_uri(spec.checkpoint_uri) if spec.checkpoint_uri
                                else (runtime.buckets.checkpoints, f"{job_id}/"))
    statements = [
        {"Sid": "Checkpoints", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"{s3}{ckpt_bucket}/{ckpt_prefix}*"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": [f"{s3}{runtime.buckets.logs}/jobs/{job_id}/*"]},
        {"Sid": "ListOwnPrefixes", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": sorted({f"{s3}{b}" for b in (ckpt_bucket, *(split_s3_uri(u)[0]
                                                                for u in spec.channels.values()))})},
        {"Sid": "TeamKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"],
         "Resource": ["*"]},   # the role policy already limits this to the team's key
    ]
    if reads:
        statements.insert(0, {"Sid": "Channels", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": reads})
    return {"Version": "2012-10-17", "Statement": statements}


class JobCredentials:
    """Assumes the job role for one job, writes the credential files, refreshes them until ``stop``."""

    def __init__(self, sts: Any, role_arn: str, job_id: str, policy: dict[str, Any], directory: Path,
                 region: str, duration_s: int, owner: tuple[int, int] | None = None,
                 refresh_s: float | None = None) -> None:
        self.sts, self.role_arn, self.job_id, self.policy = sts, role_arn, job_id, policy
        self.directory, self.region, self.duration_s, self.owner = directory, region, duration_s, owner
        self.refresh_s = refresh_s or duration_s * REFRESH_AT
        self.session_file = directory / "session.json"
        self.config_file = directory / "config"
        self.container_config_file = directory / "container-config"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> dict[str, str]:
        """Issue the first session; returns the environment the job needs to use it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._issue()
        reader = f"{shlex.quote(sys.executable)} -c {shlex.quote(_PRINT_SESSION)} {shlex.quote(str(self.session_file))}"
        self._write(self.config_file, f"[default]\nregion = {self.region}\ncredential_process = {reader}\n")
        inside = f"{CONTAINER_CREDENTIALS}/{self.session_file.name}"
        self._write(self.container_config_file,
                    f"[default]\nregion = {self.region}\ncredential_process = cat {inside}\n")
        if self.owner:
            os.chown(self.directory, *self.owner)
        self._thread = threading.Thread(target=self._refresh, name=f"job-creds-{self.job_id}", daemon=True)
        self._thread.start()
        return {"AWS_CONFIG_FILE": str(self.config_file), "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": self.region}

    def stop(self) -> None:
        """End the refreshes and delete the files, so no later job finds this one's session."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _issue(self) -> None:
        creds = self.sts.assume_role(RoleArn=self.role_arn, RoleSessionName=f"job-{self.job_id}"[:64],
                                     Policy=json.dumps(self.policy), DurationSeconds=self.duration_s)["Credentials"]
        self._write(self.session_file, json.dumps({
            "Version": 1, "AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
            "SessionToken": creds["SessionToken"], "Expiration": creds["Expiration"].isoformat()}))

    def _write(self, path: Path, text: str) -> None:
        """Atomically, readable by the job user only (and the agent, root)."""
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if self.owner:
            os.chown(tmp, *self.owner)
        os.replace(tmp, path)

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self._issue()
            except Exception as exc:   # STS briefly unreachable: the current session is still valid
                log.warning("job credentials refresh failed; retrying in 60 s",
                            extra={"job_id": self.job_id, "error": f"{type(exc).__name__}: {exc}"})
                self._stop.wait(60)


# What credential_process runs: print the session file (the agent keeps it current).
_PRINT_SESSION = "import sys; sys.stdout.write(open(sys.argv[1]).read())"


def container_credentials_env(credentials_env: dict[str, str]) -> dict[str, str]:
    """The job's credential variables as a container sees them (the folder mounted at CONTAINER_CREDENTIALS);
    without a job role, none at all, with IMDS still off for the SDK."""
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_CONFIG_FILE": os.devnull}
    if "AWS_CONFIG_FILE" in credentials_env:
        env.update(credentials_env, AWS_CONFIG_FILE=f"{CONTAINER_CREDENTIALS}/container-config")
    return env


def job_environment(base: dict[str, str], credentials_env: dict[str, str] | None) -> dict[str, str]:
    """``base`` without the host's credentials, plus the job's (or none at all)."""
    env = {k: v for k, v in base.items() if k not in HOST_CREDENTIAL_VARS}
    env.update(credentials_env or {"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                                    "AWS_CONFIG_FILE": os.devnull})
    return env


def start_job_credentials(
        sts: Any, runtime: TeamRuntime, spec: JobSpec, job_id: str, directory: Path, duration_s: int,
        owner: tuple[int, int] | None) -> tuple[JobCredentials | None, dict[str, str]]:
    """The job's credentials (None where the team has no job role) and the environment that carries them."""
    if not runtime.job_role_arn:
        log.warning("the team runtime names no job role: the job gets no AWS credentials", extra={"job_id": job_id})
        return None, {}
    partition = runtime.job_role_arn.split(":")[1]
    creds = JobCredentials(sts, runtime.job_role_arn, job_id, session_policy(runtime, spec, job_id, partition),
                           directory, runtime.region, duration_s, owner)
    return creds, creds.start()
