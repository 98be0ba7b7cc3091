"""Fixtures for the node playbooks: the cached rootfs, booted nspawn targets, the agent wheel and
the signed stand-in for NVIDIA's apt repository."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from gpufleet.nodes.configure import build_wheel, group_name
from tests.nodes import aptrepo, nspawn

_names = itertools.count(1)
BootFn = Callable[[], nspawn.Target]


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for tests/nodes: {', '.join(missing)} (run scripts/ci-nodes-setup)")


@pytest.fixture(scope="session")
def rootfs() -> Path:
    require("debootstrap", "systemd-nspawn", "ssh", "ansible-playbook")
    return nspawn.build_rootfs()


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nspawn.ssh_keypair(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="session")
def pip_cache() -> Path:
    """Bound into every target as /root/.cache/pip, beside the rootfs cache. Meant to save the agent's
    dependency downloads; measured 2026-11-26 it stays empty (the pip module's runs do not use it yet)."""
    path = nspawn.ROOTFS_CACHE.parent / "pip"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def agent_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(nspawn.REPO_ROOT, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def nvidia_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the signed stand-in repositories (<url>cuda/ and <url>container/, key key.asc)."""
    require("dpkg-deb", "dpkg-scanpackages", "gpg")
    repo = tmp_path_factory.mktemp("nvidia-repo") / "repo"
    aptrepo.build(repo)
    with aptrepo.serve(repo) as url:
        yield url


@pytest.fixture(scope="module")
def boot_target(rootfs: Path, ssh_key: Path, pip_cache: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootFn]:
    """Boots fresh targets on demand; all are powered off when the module ends."""
    targets: list[nspawn.Target] = []

    def boot() -> nspawn.Target:
        name = f"gpufleet-t{next(_names)}"
        target = nspawn.boot(rootfs, tmp_path_factory.mktemp(name), ssh_key, name,
                             binds={pip_cache: "/root/.cache/pip"})
        targets.append(target)
        return target

    yield boot
    for target in targets:
        nspawn.shutdown(target)


def nvidia_repo_vars(url: str) -> dict[str, object]:
    """Host vars that point every NVIDIA repository at the stand-in, on an NVSwitch instance type."""
    return {
        "nvidia_driver_source": "nvidia", "nvidia_driver_version": aptrepo.DRIVER,
        "nvidia_driver_kernel_headers": False, "instance_type": "p4d.24xlarge",
        "nvidia_repository_cuda_url": f"{url}cuda/", "nvidia_repository_cuda_key": f"{url}cuda/key.asc",
        "nvidia_container_toolkit_repo_url": f"{url}container/",
        "nvidia_container_toolkit_repo_key": f"{url}container/key.asc",
        "nvidia_container_toolkit_version": aptrepo.CONTAINER_TOOLKIT,
    }


def write_inventory(path: Path, target: nspawn.Target, team: str, role: str, host_vars: dict[str, object]) -> Path:
    """A static inventory shaped like the aws_ec2 one: the host in team_<team> and role_<role>."""
    host = {target.name: {**target.inventory_vars(), "gpufleet_role": role, **host_vars}}
    doc = {"all": {"children": {group_name("team", team): {"hosts": host},
                                group_name("role", role): {"hosts": {target.name: {}}}}}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
