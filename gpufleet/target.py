"""Where stacks deploy: real AWS, or the local emulator (the embedded default).

The target decides the provider's endpoints and credentials and the Terraform backend. It is chosen by
``--target`` or ``GPUFLEET_TARGET`` (``local`` unless set), so nobody reaches a real account by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpufleet.errors import UserInputError

TargetKind = Literal["local", "aws"]
TARGET_ENV = "GPUFLEET_TARGET"
# Used only for synth when no emulator is running (e.g. tests, `cdktf synth`); deploy needs a live one.
PLACEHOLDER_ENDPOINT = "http://127.0.0.1:4566"


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    state_dir: Path
    emulator_endpoint: str | None = None
    # Local mode only: leave out what makes the AWS provider wait on fixed timers and the emulator cannot
    # use (see gpufleet.local.differences). False reproduces the plain emulator, for the bench.
    skip_provider_waits: bool = True

    @property
    def local(self) -> bool:
        return self.kind == "local"


def target_kind(value: str | None = None) -> TargetKind:
    kind = (value or os.environ.get(TARGET_ENV) or "local").strip().lower()
    if kind not in ("local", "aws"):
        raise UserInputError([f"--target: {kind!r} is not a target (use 'local' or 'aws')"])
    return "local" if kind == "local" else "aws"


def local_target(state_dir: Path, endpoint: str | None, skip_provider_waits: bool = True) -> Target:
    return Target("local", state_dir.absolute(), endpoint or PLACEHOLDER_ENDPOINT, skip_provider_waits)


def aws_target(state_dir: Path) -> Target:
    return Target("aws", state_dir.absolute())
