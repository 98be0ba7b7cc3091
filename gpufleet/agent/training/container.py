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

import base64
import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from gpufleet.agent.training.claim import Claim
from gpufleet.agent.training.isolation import JobUser
from gpufleet.agent.training.jobcreds import CONTAINER_CREDENTIALS
from gpufleet.agent.training.layout import Layout, sm_environment
from gpufleet.agent.training.process import JobProcess
from gpufleet.aws import AWS_ERRORS, AwsClients
from gpufleet.schema.container_settings import ContainerSettings
from gpufleet.schema.job_spec import JobSpec

log = logging.getLogger("gpufleet.agent.container")
CONTAINER_ROOT = Path("/opt/ml")
AGENT_LABEL = "gpufleet.agent"     # value: the agent's instance id, so agents sharing a host keep apart
ECR_REGISTRY = re.compile(r"^(\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?)/")
_FAILURE_CHARS = 2000
_CLI_TIMEOUT_S = 120


class ContainerError(Exception):
    """The container cannot be started (no runtime, image missing or not pullable): the job fails."""


def runtime_command(settings: ContainerSettings) -> list[str]:
    """The runtime's command line up to its subcommand: the configured one, else podman, else docker."""
    if settings.command:
        return list(settings.command)
    for name in ("podman", "docker"):
        if shutil.which(name):
            return [name]
    raise ContainerError("no container runtime: neither podman nor docker is on PATH "
                         "(install podman, or set containers.command in the agent config)")


def _cli(settings: ContainerSettings, args: list[str], stdin: str | None = None,
         timeout_s: float = _CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.env}
    try:
        return subprocess.run([*runtime_command(settings), *args], input=stdin, capture_output=True, text=True,
                              env=env, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainerError(f"{' '.join(args[:2])}: {exc}") from None


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


def ensure_image(clients: AwsClients, settings: ContainerSettings, image: str) -> None:
    """Make ``image`` available locally: pulled (with an ECR login for ECR images) unless it is there and
    ``pull`` is ``missing``. Raises ContainerError with the runtime's own error line."""
    present = _cli(settings, ["image", "inspect", image]).returncode == 0
    if settings.pull == "never" or (settings.pull == "missing" and present):
        if not present:
            raise ContainerError(f"image {image} is not on this host and containers.pull is 'never'")
        return
    registry = ECR_REGISTRY.match(image)
    if registry:
        _ecr_login(clients, settings, registry.group(1))
    pulled = _cli(settings, ["pull", image], timeout_s=3600)
    if pulled.returncode != 0:
        raise ContainerError(f"could not pull {image}: {_last_line(pulled)}")


def _ecr_login(clients: AwsClients, settings: ContainerSettings, registry: str) -> None:
    try:
        data = clients.client("ecr").get_authorization_token()["authorizationData"][0]
    except AWS_ERRORS as exc:
        raise ContainerError(f"ECR login for {registry}: {exc}") from None
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    result = _cli(settings, ["login", "--username", user, "--password-stdin", registry], stdin=password)
    if result.returncode != 0:
        raise ContainerError(f"ECR login for {registry}: {_last_line(result)}")


def gpu_args(settings: ContainerSettings) -> list[str]:
    """The host's GPUs for the container, when the NVIDIA container toolkit described them (CDI)."""
    if not any(Path(spec).is_file() for spec in settings.cdi_specs):
        return []
    return ["--gpus", "all"] if Path(runtime_command(settings)[0]).name == "docker" else \
        ["--device", "nvidia.com/gpu=all"]


def container_name(job_id: str, attempt: int, slot: int) -> str:
    return f"gpufleet-{job_id}-{attempt}-{slot}"


def training_argv(settings: ContainerSettings, layout: Layout, spec: JobSpec, *, name: str, agent: str,
                  extra_env: dict[str, str], slot: int, job_id: str, user: JobUser | None = None,
                  credentials_dir: Path | None = None) -> list[str]:
    """``<runtime> run ... IMAGE train`` with the /opt/ml mounts and the SM_* environment, as ``user``
    (when the agent can switch users) with the job's credentials folder (when it has a job role)."""
    assert spec.image
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
    return [*argv, spec.image, "train"]


def remove_leftovers(settings: ContainerSettings, agent: str) -> None:
    """Remove this agent's containers that outlived it (an agent killed -9 cannot stop its container)."""
    found = _cli(settings, ["ps", "--all", "--quiet", "--filter", f"label={AGENT_LABEL}={agent}"])
    ids = found.stdout.split() if found.returncode == 0 else []
    if ids:
        log.warning("removing containers left by an earlier agent", extra={"containers": ids})
        _cli(settings, ["rm", "--force", *ids])


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
        super().__init__(argv, {**os.environ, **settings.env}, cwd, log_path, on_line, tail_lines)
        self.settings, self.name = settings, name

    def stop(self, grace_s: float) -> int:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ContainerError):
                _cli(self.settings, ["stop", "-t", str(max(1, round(grace_s))), self.name],
                                       timeout_s=grace_s + _CLI_TIMEOUT_S)
        return super().stop(min(grace_s, 10.0))


def container_job(settings: ContainerSettings, layout: Layout, claim: Claim, agent: str,
                  on_line: Callable[[str], None], tail_lines: int, user: JobUser | None = None,
                  credentials_env: dict[str, str] | None = None,
                  credentials_dir: Path | None = None) -> ContainerProcess:
    """The claimed job's container, ready to start (after ``ensure_image`` and ``remove_leftovers``).
    ``credentials_env``: the variables of the job's session as the container sees it."""
    name = container_name(claim.job_id, claim.attempt, claim.slot)
    extra = {"PYTHONUNBUFFERED": "1", "GPUFLEET_JOB_ID": claim.job_id, "GPUFLEET_ATTEMPT": str(claim.attempt),
             **(credentials_env or {})}
    if claim.rendezvous:   # multi-node: node 0's address, where a torchrun inside the image can meet
        extra["GPUFLEET_RENDEZVOUS"] = claim.rendezvous
    argv = training_argv(settings, layout, claim.spec, name=name, agent=agent, extra_env=extra,
                         slot=claim.slot, job_id=claim.job_id, user=user, credentials_dir=credentials_dir)
    return ContainerProcess(settings, name, argv, layout.root, layout.job_log, on_line, tail_lines)


def prepare_container(clients: AwsClients, settings: ContainerSettings, image: str, agent: str) -> None:
    remove_leftovers(settings, agent)
    ensure_image(clients, settings, image)
