"""Opt-in tier (GPUFLEET_TEST_NVIDIA=1): the real Debian nvidia-driver and nvidia-cuda-toolkit from
the non-free archive, installed by gpu-node.yml into a booted nspawn target (about 6 GB of packages).

Real: the packages, apt pinning against bookworm-security's newer driver, the repeat run. Not real:
the kernel module (DKMS has no headers for this machine's kernel, and there is no GPU), so the GPU
checks take their no-GPU path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gpufleet.nodes.configure import ConfigureRequest, configure_nodes
from gpufleet.nodes.events import NodeEvent
from gpufleet.ports import free_port
from tests.nodes.conftest import BootFn, write_inventory

pytestmark = [pytest.mark.nvidia, pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("GPUFLEET_TEST_NVIDIA") != "1",
                                 reason="opt-in tier: set GPUFLEET_TEST_NVIDIA=1 (about 6 GB, minutes)")]
DRIVER = "535.261.03"   # bookworm's own; bookworm-security carries a newer one the pin must refuse


def test_debian_driver_and_cuda_install_pinned_and_converge_twice(boot_target: BootFn, agent_wheel: Path,
                                                                  tmp_path: Path) -> None:
    target = boot_target()
    inventory = write_inventory(tmp_path / "hosts.yml", target, "alpha", "training", {
        "nvidia_driver_source": "debian", "nvidia_driver_version": DRIVER, "nvidia_driver_kernel_headers": False,
        "nvidia_container_toolkit_repo_url": "", "gpufleet_agent_extras": ["agent"],
        "gpufleet_agent_health_port": free_port()})
    events: list[NodeEvent] = []
    request = ConfigureRequest(team="alpha", wheel=agent_wheel, inventory=inventory, workspace=tmp_path)
    started = time.monotonic()
    first = configure_nodes(request, events.append)
    print(f"\nreal Debian NVIDIA converge: {time.monotonic() - started:.0f} s")
    assert first.failures == [], first.failures
    skipped = [e for e in events if e.task.startswith("Skip the container toolkit") and e.status == "ok"]
    assert skipped, "the container toolkit should be skipped with a message where its repository is unset"

    def version(pkg: str) -> str:
        return target.ssh(f"dpkg-query -W -f='${{Version}}' {pkg}").stdout

    assert version("nvidia-driver").startswith(f"{DRIVER}-")
    assert version("nvidia-cuda-toolkit").startswith("11.8.")
    assert "release 11.8" in target.ssh("nvcc --version").stdout
    second = configure_nodes(request)
    assert second.recap[target.name].changed == 0
