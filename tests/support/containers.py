"""Test images for container jobs and endpoints: built locally with podman + runc from the cached Debian
rootfs (no registry is reachable here), and cached across runs under a tag made of their build inputs' hash."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.nodes.nspawn import build_rootfs

# This machine: crun fails on its hybrid cgroups and raising RLIMIT_NOFILE/NPROC is not permitted, so
# runc, cgroupfs and no default ulimits (see ENVIRONMENT.md). Real hosts use podman's defaults.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
# The same as containers.conf, for a plain `podman` (an agent with default `containers:` settings, such as
# the local cloud's) when CONTAINERS_CONF names it.
CONTAINERS_CONF = """[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
BASE_IMAGE = "localhost/gpufleet-test-base:debian12"
IMAGES = Path(__file__).parent / "images"


@dataclass(frozen=True)
class Podman:
    conf: Path

    @property
    def env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.conf)}

    def agent_settings(self) -> dict[str, object]:
        """The agent config's ``containers:`` for this machine."""
        return {"command": PODMAN, "env": self.env, "pull": "never"}

    def run(self, *args: str, stdin: bytes | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*PODMAN, *args], input=stdin, capture_output=True, timeout=timeout_s,
                              env={**os.environ, **self.env}, check=False)

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image).returncode == 0

    def build(self, folder: Path, name: str) -> str:
        """``name:<hash of the folder>``; built only when no image has that tag yet."""
        digest = hashlib.sha256()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
        image = f"localhost/{name}:{digest.hexdigest()[:12]}"
        if not self.exists(image):
            self._base()
            built = self.run("build", "--build-arg", f"BASE={BASE_IMAGE}", "-t", image, str(folder))
            assert built.returncode == 0, built.stderr.decode()[-2000:]
        return image

    def _base(self) -> None:
        if self.exists(BASE_IMAGE):
            return
        with subprocess.Popen(["tar", "-C", str(build_rootfs()), "-c", "."], stdout=subprocess.PIPE) as tar:
            imported = subprocess.run([*PODMAN, "import", "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True,
                                      env={**os.environ, **self.env}, timeout=600, check=False)
        assert imported.returncode == 0, imported.stderr.decode()[-2000:]


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    missing = [t for t in ("podman", "runc") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)} for container tests (run scripts/setup --tests)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return Podman(conf)


@pytest.fixture(scope="session")
def serve_image(podman: Podman) -> str:
    """SageMaker's serving contract in plain python3 (``images/serve/serve``): answers the JSON rows' sums
    times its model's scale, with the model's version and what it saw."""
    return podman.build(IMAGES / "serve", "gpufleet-test-serve")


def serve_model_artifact(version: int, scale: float) -> bytes:
    """A model.tar.gz for the serve image: ``model.json`` at its root (its format is the image's business)."""
    return tarball({"model.json": json.dumps({"version": version, "scale": scale}).encode()})


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
