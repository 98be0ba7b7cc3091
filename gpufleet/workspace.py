"""The ``.gpufleet/`` folder in the working directory: emulator record, Terraform state, agent pids and logs."""

from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_ENV = "GPUFLEET_HOME"
REGION_ENV = "GPUFLEET_REGION"  # target a DR rebuild's region instead of the platform's own


def workspace(root: str | Path | None = None) -> Path:
    """The ``.gpufleet`` folder: ``$GPUFLEET_HOME`` if set, else ``./.gpufleet``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(WORKSPACE_ENV) or Path.cwd() / ".gpufleet").absolute()


def state_dir(root: Path) -> Path:
    return root / "state"


def teams_dir(root: Path, rebuilt_region: str | None = None) -> Path:
    """Team runtime configs; a DR rebuild's live in ``teams/<region>/`` so they never overwrite the primary's."""
    return root / "teams" / rebuilt_region if rebuilt_region else root / "teams"


def agents_dir(root: Path) -> Path:
    return root / "agents"


def calls_dir(root: Path) -> Path:
    """The call record (``gpufleet.callrecord``) of every local process, which ``gpufleet audit`` reads."""
    return root / "calls"
