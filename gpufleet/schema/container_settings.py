"""How agents run SageMaker bring-your-own-container images (``containers:`` in the agent config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ContainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # The runtime's command line up to its subcommand, e.g. ["podman", "--runtime", "runc"]; default:
    # podman if it is on PATH (through service_socket when the agent is not root), else docker.
    command: list[str] | None = Field(default=None, min_length=1)
    # The root podman service's socket, which the playbook's container_runtime role opens to the agent's
    # group: an agent not running as root (a systemd-hardened one cannot run rootless podman) drives it.
    service_socket: str = "/run/podman/podman.sock"
    env: dict[str, str] = Field(default_factory=dict)   # for the runtime's CLI (e.g. CONTAINERS_CONF)
    network: str = "host"        # training: multi-node jobs rendezvous over the host's network, as torchrun does
    shm_size: str = Field(default="2g", pattern=r"^[0-9]+[bkmg]?$")   # PyTorch data loaders share memory
    pull: Literal["missing", "always", "never"] = "missing"   # ECR tags are immutable: "missing" is enough
    # Where the NVIDIA container toolkit writes its CDI spec on hosts with GPUs (the playbook's nvidia-ctk).
    cdi_specs: list[str] = Field(default_factory=lambda: ["/etc/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml"])
