"""A team's GPU capacity: the AMI, the agent's user-data, the training fleet and the endpoint fleets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdktf import Fn

from gpufleet.config import GpuAmi
from gpufleet.providers import DataAwsAmi
from gpufleet.schema.agent_config import DEFAULT_AGENT_CONFIG, AgentConfig
from gpufleet.stacks.base import GpufleetStack

# Local mode: moto ships no AMI we baked, so hosts boot moto's bundled Deep Learning AMI
# (listed in gpufleet.local.differences).
LOCAL_AMI = GpuAmi(name_pattern="Deep Learning AMI Ubuntu Linux*", owners=["898082745236"])


@dataclass(frozen=True)
class Ami:
    id: str
    root_device_name: str


def lookup_ami(stack: GpufleetStack, ami: GpuAmi) -> Ami:
    """The configured AMI: a pinned id, else the newest image matching the name pattern."""
    chosen = LOCAL_AMI if stack.target.local else ami
    flt = ({"name": "image-id", "values": [chosen.id]} if chosen.id
           else {"name": "name", "values": [chosen.name_pattern]})
    image = DataAwsAmi(stack, "gpu-ami", most_recent=True, owners=list(chosen.owners), filter=[flt])
    return Ami(image.id, image.root_device_name)


def agent_user_data(runtime: dict[str, Any], role: str, endpoint: str | None = None,
                    variant: str | None = None) -> str:
    """A boot script that writes the agent's config (validated here) and starts the agent.

    ``runtime`` may hold Terraform references; they are plain strings to the validator.
    """
    extra = {"endpoint": endpoint, "variant": variant} if endpoint else {}
    config = AgentConfig.model_validate({"role": role, "team": runtime, **extra})
    path = DEFAULT_AGENT_CONFIG
    head = "\n".join([
        "#!/bin/bash",
        "set -euo pipefail",
        "umask 027",
        f"install -d -m 0750 {path.rsplit('/', 1)[0]}",
        f"cat > {path}.tmp <<'GPUFLEET_AGENT_CONFIG'",
        "",
    ])
    tail = "\n".join(["", "GPUFLEET_AGENT_CONFIG", f"mv {path}.tmp {path}", "systemctl start gpufleet-agent", ""])
    # JSON is YAML, so the agent reads it from agent.yaml; Terraform fills in the references.
    return Fn.join("", [head, Fn.jsonencode(config.model_dump(mode="json", exclude_none=True)), tail])
