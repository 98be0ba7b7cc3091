"""The ``.gpufleet/`` folder in the working directory: emulator record, Terraform state, agent pids and logs."""

from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_ENV = "GPUFLEET_HOME"


def workspace(root: str | Path | None = None) -> Path:
    """The ``.gpufleet`` folder: ``$GPUFLEET_HOME`` if set, else ``./.gpufleet``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(WORKSPACE_ENV) or Path.cwd() / ".gpufleet").absolute()


def state_dir(root: Path) -> Path:
    return root / "state"


def teams_dir(root: Path) -> Path:
    return root / "teams"


def agents_dir(root: Path) -> Path:
    return root / "agents"
