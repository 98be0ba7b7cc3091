"""Bring the local cloud up (emulator, stacks through the real Terraform, the local cloud process) and
take it down again, leaving nothing behind. The CLI's ``local up|down`` and the demo call these."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from gpufleet.config import PlatformConfig
from gpufleet.deploy import StackOutcome, run_stacks
from gpufleet.local import cloud, emulator
from gpufleet.local.instances import read_instances
from gpufleet.target import local_target
from gpufleet.terraform.runner import EventSink
from gpufleet.workspace import state_dir


@dataclass
class UpResult:
    emulator: emulator.Emulator
    cloud: cloud.CloudRecord
    outcomes: list[StackOutcome] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def synth_dir(root: Path) -> Path:
    """Local synth output lives in the workspace, so ``local down`` removes it with everything else."""
    return root / "cdktf.out"


def local_up(root: Path, cfg: PlatformConfig | None, sink: EventSink | None = None) -> UpResult:
    """Start the emulator, deploy ``cfg``'s stacks into it (if given), then start the local cloud."""
    times: dict[str, float] = {}
    started = time.monotonic()
    emu = emulator.start(root)
    times["emulator"] = time.monotonic() - started
    outcomes: list[StackOutcome] = []
    if cfg is not None:
        started = time.monotonic()
        _, outcomes = run_stacks(cfg, local_target(state_dir(root), emu.endpoint), root, synth_dir(root),
                                 "deploy", (), sink)
        times["stacks"] = time.monotonic() - started
    started = time.monotonic()
    rec = cloud.start(root, emu)
    times["local cloud"] = time.monotonic() - started
    return UpResult(emu, rec, outcomes, times)


def local_down(root: Path) -> bool:
    """Stop the local cloud (agents drain first), then the emulator, and delete the workspace.

    Everything local mode made lives in the workspace or in those processes, so this leaves nothing.
    True if anything was running.
    """
    agents = []
    for inst in read_instances(root):
        with contextlib.suppress(psutil.NoSuchProcess):
            agents.append(psutil.Process(inst.pid))
    was_cloud = cloud.stop(root)
    was_emulator = emulator.stop(root)
    psutil.wait_procs(agents, timeout=10)
    if root.exists():
        shutil.rmtree(root)
    return was_cloud or was_emulator
