"""``gpufleet audit``: recorded calls (or CloudTrail's) against the synthesized policies and network."""

from __future__ import annotations

from pathlib import Path

from gpufleet.audit.cloudtrail import read_cloudtrail
from gpufleet.audit.evaluate import AuditReport, audit
from gpufleet.audit.stacks import load_stacks
from gpufleet.callrecord import read_calls
from gpufleet.errors import UserInputError
from gpufleet.local.instances import read_instances
from gpufleet.workspace import calls_dir


def synth_dirs_in(root: Path) -> list[Path]:
    """The local synth output and every DR rebuild's (``cdktf.out``, ``cdktf.out-<region>``)."""
    return sorted(p for p in root.glob("cdktf.out*") if (p / "stacks").is_dir())


def run_audit(root: Path, synth_dirs: list[Path] | None = None, state_dir: Path | None = None,
              cloudtrail: Path | None = None) -> AuditReport:
    """Audit the workspace ``root``'s call record (or a CloudTrail file) against ``synth_dirs``' stacks."""
    dirs = synth_dirs or synth_dirs_in(root)
    if not dirs:
        raise UserInputError([f"{root}: no synthesized stacks (run `gpufleet synth` and pass --stacks cdktf.out, "
                              "or audit a workspace the local cloud deployed)"])
    if cloudtrail is None and not calls_dir(root).is_dir():
        raise UserInputError([f"{calls_dir(root)}: no call record (run the local cloud, e.g. `gpufleet demo`, or "
                              "pass --cloudtrail FILE)"])
    calls = read_cloudtrail(cloudtrail) if cloudtrail else read_calls(calls_dir(root))
    # Auto Scaling calls that name only an instance act on that instance's group.
    instance_asgs = {i.instance_id: i.asg for i in read_instances(root)}
    return audit(load_stacks(dirs, state_dir), calls, instance_asgs)
