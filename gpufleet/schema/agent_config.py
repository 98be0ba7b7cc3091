"""The agent's config file (``/etc/gpufleet/agent.yaml`` or ``.json``): the team runtime config plus
the agent's own fields. Written by user-data or Ansible; in local mode by the local cloud.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpufleet.documents import read_document
from gpufleet.errors import UserInputError
from gpufleet.schema import Variant
from gpufleet.schema.container_settings import ContainerSettings
from gpufleet.schema.pip_settings import PipSettings
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.schema.serving_settings import ServingSettings
from gpufleet.schema.training_settings import TrainingSettings

DEFAULT_AGENT_CONFIG = "/etc/gpufleet/agent.yaml"


class LocalOverrides(BaseModel):
    """Local mode: the emulator's endpoint and a fixed identity instead of IMDS."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    aws_endpoint_url: str
    instance_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    imds_endpoint: str | None = None  # tests point this at a fake IMDS to send spot notices


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["training", "serving"]
    team: TeamRuntime
    endpoint: str | None = None
    variant: Variant | None = None
    work_root: str = "/opt/ml"              # SageMaker-style layout lives under here
    health_port: int = Field(default=8081, ge=0, le=65535)   # /healthz for every role (0 = off)
    serving_port: int = Field(default=8080, ge=0, le=65535)
    local: LocalOverrides | None = None
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    pip: PipSettings = Field(default_factory=PipSettings)   # requirements.txt of jobs and models
    containers: ContainerSettings = Field(default_factory=ContainerSettings)   # jobs and endpoints with image:

    @model_validator(mode="after")
    def _serving_needs_endpoint(self) -> AgentConfig:
        if self.role == "serving" and not (self.endpoint and self.variant):
            raise ValueError("role 'serving' needs 'endpoint' and 'variant' (add them, e.g. variant: blue)")
        return self


def load_agent_config(path: str | Path) -> AgentConfig:
    data = read_document(path, "agent config", "write it with user-data or Ansible, or pass --config")
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(
            f"{path}: {'.'.join(str(p) for p in e['loc']) or 'config'}: "
            f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()
        ) from None
