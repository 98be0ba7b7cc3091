"""Where the agent's pip finds a job's or model's ``requirements.txt`` packages: ``pip:`` in the agent
config, shared by both roles. Offline hosts name an index mirror or a wheelhouse folder.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PipSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    index_url: str | None = None    # a PyPI mirror (pip --index-url); default: pip's own configuration
    wheelhouse: str | None = None   # a folder of wheels: pip --no-index --find-links (air-gapped hosts)
    cache_dir: str | None = None    # where the per-requirements virtualenvs live; default <work_root>/envs
    timeout_s: float = Field(default=900.0, gt=0)   # one pip install; past it the job fails

    @model_validator(mode="after")
    def _one_source(self) -> PipSettings:
        if self.index_url and self.wheelhouse:
            raise ValueError("pip: give index_url or wheelhouse, not both (a wheelhouse means no index)")
        return self
