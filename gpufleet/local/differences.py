"""What local mode switches off, and why: the one list, printed on every local deploy.

Each entry is a feature the emulator (moto server) cannot run. Real-AWS synth always has all of them.
"""

from __future__ import annotations

from rich.console import Console

LOCAL_MODE_DIFFERENCES: list[tuple[str, str]] = [
    ("S3 buckets are force-destroyable", "so `gpufleet local down` leaves nothing behind"),
]


def print_local_differences(console: Console) -> None:
    console.print("[bold]local mode[/] (emulated AWS) differs from real AWS in exactly these ways:")
    for feature, why in LOCAL_MODE_DIFFERENCES:
        console.print(f"  • {feature}: {why}")
