"""The container runtime both roles drive (podman, or docker where that is what the host has): its
command line, images (pulled from ECR with a token, or already on the host), GPUs through the NVIDIA
container toolkit's CDI spec, and the containers an earlier agent left behind.

Training runs SageMaker's ``train`` contract (``training.container``), serving its ``serve`` contract
(``serving.container``); both through these functions.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from gpufleet.aws import AWS_ERRORS, AwsClients
from gpufleet.images import resolve_image
from gpufleet.schema.agent_config import AgentConfig
from gpufleet.schema.container_settings import ContainerSettings

log = logging.getLogger("gpufleet.agent.container")
AGENT_LABEL = "gpufleet.agent"     # value: the agent's instance id, so agents sharing a host keep apart
ECR_REGISTRY = re.compile(r"^(\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?)/")
CLI_TIMEOUT_S = 120


class ContainerError(Exception):
    """The container cannot be started (no runtime, image missing or not pullable)."""


def agent_image(config: AgentConfig, image: str) -> str:
    """``image`` as this agent runs it: a repository-relative one in the team's registry (local mode: the
    machine's own images). Raises ContainerError when it cannot be resolved."""
    try:
        return resolve_image(image, config.team.image_repository, local=config.local is not None)
    except ValueError as exc:
        raise ContainerError(str(exc)) from None


def agent_settings(config: AgentConfig) -> ContainerSettings:
    """The agent's ``containers:`` settings, as it applies them."""
    return local_settings(config.containers) if config.local is not None else config.containers


def local_settings(settings: ContainerSettings) -> ContainerSettings:
    """Local mode pulls nothing: moto's ECR stores repositories but serves no registry, so images are the
    machine's own (a listed local difference, ``gpufleet.local.differences``)."""
    return settings.model_copy(update={"pull": "never"})


def runtime_command(settings: ContainerSettings) -> list[str]:
    """The runtime's command line up to its subcommand: the configured one, else podman (the root service's,
    through its socket, for an agent that is not root), else docker."""
    if settings.command:
        return list(settings.command)
    if shutil.which("podman"):
        if os.geteuid() != 0 and Path(settings.service_socket).is_socket():
            return ["podman", "--remote", "--url", f"unix://{settings.service_socket}"]
        return ["podman"]
    if shutil.which("docker"):
        return ["docker"]
    raise ContainerError("no container runtime: neither podman nor docker is on PATH "
                         "(install podman, or set containers.command in the agent config)")


def runtime_env(settings: ContainerSettings) -> dict[str, str]:
    """The environment for the runtime's CLI: the agent's, plus ``containers.env``."""
    return {**os.environ, **settings.env}


def run_cli(settings: ContainerSettings, args: list[str], stdin: str | None = None,
            timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([*runtime_command(settings), *args], input=stdin, capture_output=True, text=True,
                              env=runtime_env(settings), timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainerError(f"{' '.join(args[:2])}: {exc}") from None


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


def ensure_image(clients: AwsClients, settings: ContainerSettings, image: str) -> None:
    """Make ``image`` available locally: pulled (with an ECR login for ECR images) unless it is there and
    ``pull`` is ``missing``. Raises ContainerError with the runtime's own error line."""
    present = run_cli(settings, ["image", "inspect", image]).returncode == 0
    if settings.pull == "never" or (settings.pull == "missing" and present):
        if not present:
            raise ContainerError(f"image {image} is not on this host and containers.pull is 'never'")
        return
    registry = ECR_REGISTRY.match(image)
    if registry:
        _ecr_login(clients, settings, registry.group(1))
    pulled = run_cli(settings, ["pull", image], timeout_s=3600)
    if pulled.returncode != 0:
        raise ContainerError(f"could not pull {image}: {last_line(pulled)}")


def _ecr_login(clients: AwsClients, settings: ContainerSettings, registry: str) -> None:
    try:
        data = clients.client("ecr").get_authorization_token()["authorizationData"][0]
    except AWS_ERRORS as exc:
        raise ContainerError(f"ECR login for {registry}: {exc}") from None
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    result = run_cli(settings, ["login", "--username", user, "--password-stdin", registry], stdin=password)
    if result.returncode != 0:
        raise ContainerError(f"ECR login for {registry}: {last_line(result)}")


def gpu_args(settings: ContainerSettings) -> list[str]:
    """The host's GPUs for the container, when the NVIDIA container toolkit described them (CDI)."""
    if not any(Path(spec).is_file() for spec in settings.cdi_specs):
        return []
    return ["--gpus", "all"] if Path(runtime_command(settings)[0]).name == "docker" else \
        ["--device", "nvidia.com/gpu=all"]


def stop_container(settings: ContainerSettings, name: str, grace_s: float) -> None:
    """``stop -t grace``: SIGTERM, then SIGKILL after the grace. A signal to the ``run`` CLI alone would
    leave the container running under the runtime's monitor."""
    run_cli(settings, ["stop", "-t", str(max(1, round(grace_s))), name], timeout_s=grace_s + CLI_TIMEOUT_S)


def remove_leftovers(settings: ContainerSettings, agent: str) -> None:
    """Remove this agent's containers that outlived it (an agent killed -9 cannot stop its container)."""
    found = run_cli(settings, ["ps", "--all", "--quiet", "--filter", f"label={AGENT_LABEL}={agent}"])
    ids = found.stdout.split() if found.returncode == 0 else []
    if ids:
        log.warning("removing containers left by an earlier agent", extra={"containers": ids})
        run_cli(settings, ["rm", "--force", *ids])


def prepare_container(clients: AwsClients, settings: ContainerSettings, image: str, agent: str) -> None:
    remove_leftovers(settings, agent)
    ensure_image(clients, settings, image)
