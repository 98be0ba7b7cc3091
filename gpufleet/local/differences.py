"""What local mode switches off, and why: the one list, printed on every local deploy.

Each entry is a feature the emulator (moto server 5.2.5) cannot run, or a teardown convenience.
Real-AWS synth always has all of them; tests/stacks assert both sides.
"""

from __future__ import annotations

from rich.console import Console

LOCAL_MODE_DIFFERENCES: list[tuple[str, str]] = [
    ("S3 buckets are force-destroyable", "so `gpufleet local down` leaves nothing behind"),
    ("DynamoDB deletion protection is off", "so `gpufleet destroy` can remove the tables"),
    ("bucket policies leave out the TLS-only and team-scope Deny statements",
     "moto applies any Deny with a condition to every request; IAM role policies still scope each team"),
    ("GPU hosts boot moto's bundled Deep Learning AMI (owner 898082745236), not platform.gpu_ami",
     "moto holds no AMI baked by ami/"),
    ("launch templates ignore drift in tag_specifications",
     "moto echoes the template's own tags into them, which would show as a change on every plan"),
    ("the artifacts replication rule (with platform.dr_region) ignores drift",
     "moto stores it without delete-marker replication and the SSE-KMS source filter"),
    ("the job queue ignores drift in its redrive policy",
     "moto returns it re-serialized with spaces, which would show as a change on every plan"),
]


def print_local_differences(console: Console) -> None:
    console.print("[bold]local mode[/] (emulated AWS) differs from real AWS in exactly these ways:")
    for feature, why in LOCAL_MODE_DIFFERENCES:
        console.print(f"  • {feature}: {why}")
