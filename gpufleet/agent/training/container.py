"""SageMaker's bring-your-own-container training contract, run with a real container runtime (podman, or
docker where that is what the host has): ``<runtime> run IMAGE train``, as SageMaker runs it.

- The agent's ``/opt/ml`` layout is bind-mounted at ``/opt/ml`` in the container: ``input/`` (channels
  and ``input/config/*.json``) read-only, ``model/``, ``output/`` and ``checkpoints/`` writable, the
  job's source (when it has one) read-only at ``/opt/ml/code``.
- The ``SM_*`` environment is the script-mode one, with the container's paths.
- GPUs come through the NVIDIA container toolkit's CDI spec, when the host has one (the playbook writes
  it only where a GPU is present): ``--device nvidia.com/gpu=all`` (podman), ``--gpus all`` (docker).
- Everything around the container stays the agent's: inputs, checkpoint sync, heartbeats, spot handling
  (``stop`` gives the container the grace period, then kills it), packaging and registering the model.
- The job boundary is the same as a process job's: the container runs as the job user (``--user``) where
  the agent can switch users, and holds only the job role's session, through the credentials folder
  mounted read-only and refreshed by the agent (``jobcreds.py``); none of the agent's environment.
  IMDS stays out of reach on hosts: with ``network: host`` (the default) the container's sockets carry
  the job user's uid, which the IMDS guard's nftables output rule drops; on a bridged network its packets
  are forwarded, and the guard's forward rule drops anything forwarded to IMDS (and IMDSv2's hop limit of
  1 keeps a token from reaching a container anyway).
- Images from ECR are pulled with a token from ``ecr:GetAuthorizationToken``; other images must already
  be on the host (local mode: locally built podman images).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from gpufleet.agent.containers import (
    AGENT_LABEL,
    ContainerError,
    gpu_args,
    runtime_command,
    runtime_env,
    stop_container,
)
from gpufleet.agent.training.claim import Claim
from gpufleet.agent.training.isolation import JobUser
from gpufleet.agent.training.jobcreds import CONTAINER_CREDENTIALS
from gpufleet.agent.training.layout import Layout, sm_environment
from gpufleet.agent.training.process import JobProcess
from gpufleet.schema.container_settings import ContainerSettings
from gpufleet.schema.job_spec import JobSpec

CONTAINER_ROOT = Path("/opt/ml")
_FAILURE_CHARS = 2000


def container_name(job_id: str, attempt: int, slot: int) -> str:
    return f"gpufleet-{job_id}-{attempt}-{slot}"


def training_argv(settings: ContainerSettings, layout: Layout, spec: JobSpec, *, image: str, name: str,
                  agent: str, extra_env: dict[str, str], slot: int, job_id: str, user: JobUser | None = None,
                  credentials_dir: Path | None = None) -> list[str]:
    """``<runtime> run ... IMAGE train`` with the /opt/ml mounts and the SM_* environment, as ``user``
    (when the agent can switch users) with the job's credentials folder (when it has a job role)."""
    inside = Layout(CONTAINER_ROOT)
    mounts = [(layout.root / "input", inside.root / "input", "ro"), (layout.model, inside.model, "rw"),
              (layout.output, inside.output, "rw"), (layout.checkpoints, inside.checkpoints, "rw")]
    if spec.source:
        mounts.append((layout.code, inside.code, "ro"))
    if credentials_dir is not None:
        mounts.append((credentials_dir, Path(CONTAINER_CREDENTIALS), "ro"))
    env = {**sm_environment(inside, spec, slot, job_id), **extra_env}
    run_as = ["--user", f"{user.uid}:{user.gid}"] if user is not None and user.isolated else []
    argv = [*runtime_command(settings), "run", "--rm", "--name", name, "--label", f"{AGENT_LABEL}={agent}",
            "--pull", "never", "--network", settings.network, "--shm-size", settings.shm_size, *run_as,
            *gpu_args(settings)]
    for host, container, mode in mounts:
        argv += ["--volume", f"{host}:{container}:{mode}"]
    for key, value in sorted(env.items()):
        argv += ["--env", f"{key}={value}"]
    return [*argv, image, "train"]


def failure_reason(layout: Layout) -> str | None:
    """What the container wrote to /opt/ml/output/failure (SageMaker's contract for a failed job)."""
    with contextlib.suppress(OSError):
        text = (layout.output / "failure").read_text(errors="replace").strip()
        return text[-_FAILURE_CHARS:] or None
    return None


class ContainerProcess(JobProcess):
    """``<runtime> run`` as the job's process. Stopping goes through the runtime (``stop -t grace``): a
    signal to the CLI alone would leave the container running under the runtime's monitor."""

    def __init__(self, settings: ContainerSettings, name: str, argv: list[str], cwd: Path, log_path: Path,
                 on_line: Callable[[str], None], tail_lines: int = 20) -> None:
        super().__init__(argv, runtime_env(settings), cwd, log_path, on_line, tail_lines)
        self.settings, self.name = settings, name

    def stop(self, grace_s: float) -> int:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ContainerError):
                stop_container(self.settings, self.name, grace_s)
        return super().stop(min(grace_s, 10.0))


def container_job(settings: ContainerSettings, layout: Layout, claim: Claim, image: str, agent: str,
                  on_line: Callable[[str], None], tail_lines: int, user: JobUser | None = None,
                  credentials_env: dict[str, str] | None = None,
                  credentials_dir: Path | None = None) -> ContainerProcess:
    """The claimed job's container running ``image`` (``claim.spec.image`` resolved), ready to start (after
    ``prepare_container``).
    ``credentials_env``: the variables of the job's session as the container sees it."""
    name = container_name(claim.job_id, claim.attempt, claim.slot)
    extra = {"PYTHONUNBUFFERED": "1", "GPUFLEET_JOB_ID": claim.job_id, "GPUFLEET_ATTEMPT": str(claim.attempt),
             **(credentials_env or {})}
    if claim.rendezvous:   # multi-node: node 0's address, where a torchrun inside the image can meet
        extra["GPUFLEET_RENDEZVOUS"] = claim.rendezvous
    argv = training_argv(settings, layout, claim.spec, image=image, name=name, agent=agent, extra_env=extra,
                         slot=claim.slot, job_id=claim.job_id, user=user, credentials_dir=credentials_dir)
    return ContainerProcess(settings, name, argv, layout.root, layout.job_log, on_line, tail_lines)
