"""The EC2 GPU instance types gpufleet knows, with their GPU counts.

Used to validate configs (``did you mean``), to size the fleet's quota in GPUs and to decide
which instance types need NVIDIA Fabric Manager (NVSwitch).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstanceType:
    name: str
    gpus: int
    gpu_model: str
    nvswitch: bool = False


def _family(prefix: str, model: str, sizes: dict[str, int], nvswitch: bool = False) -> list[GpuInstanceType]:
    return [GpuInstanceType(f"{prefix}.{size}", gpus, model, nvswitch) for size, gpus in sizes.items()]


_CATALOG: list[GpuInstanceType] = [
    *_family("g4dn", "T4", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                            "12xlarge": 4, "metal": 8}),
    *_family("g5", "A10G", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                            "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    *_family("g6", "L4", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                          "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    *_family("g6e", "L40S", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                             "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    *_family("gr6", "L4", {"4xlarge": 1, "8xlarge": 1}),
    *_family("p3", "V100", {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}),
    *_family("p3dn", "V100", {"24xlarge": 8}),
    *_family("p4d", "A100", {"24xlarge": 8}, nvswitch=True),
    *_family("p4de", "A100", {"24xlarge": 8}, nvswitch=True),
    *_family("p5", "H100", {"48xlarge": 8}, nvswitch=True),
    *_family("p5e", "H200", {"48xlarge": 8}, nvswitch=True),
    *_family("p5en", "H200", {"48xlarge": 8}, nvswitch=True),
]

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {t.name: t for t in _CATALOG}


def lookup(name: str) -> GpuInstanceType | None:
    return GPU_INSTANCE_TYPES.get(name)


def suggest(name: str) -> str | None:
    """The closest known GPU instance type to a misspelt one, or None."""
    matches = difflib.get_close_matches(name, list(GPU_INSTANCE_TYPES), n=1, cutoff=0.6)
    return matches[0] if matches else None


def needs_fabric_manager(instance_types: list[str]) -> bool:
    return any(t.nvswitch for name in instance_types if (t := lookup(name)))
