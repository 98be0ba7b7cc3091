"""A small signed apt repository on 127.0.0.1 standing in for NVIDIA's (unreachable here).

It is flat, like NVIDIA's CUDA and libnvidia-container repositories, and holds stand-in packages
with NVIDIA's names and versions. Each pinned package also has a newer decoy version, so a test
can prove the roles install the pinned one and not the newest.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DRIVER = "535.261.03"
DECOY_DRIVER = "535.999.01"
CUDA = "12.2"
CONTAINER_TOOLKIT = "1.17.8-1"

PERSISTENCED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon (test stand-in)
[Service]
Type=simple
ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose
[Install]
WantedBy=multi-user.target
"""
FABRIC_MANAGER_UNIT = PERSISTENCED_UNIT.replace("Persistence Daemon", "Fabric Manager").replace(
    "/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose",
    "/usr/bin/nv-fabricmanager")
SLEEPER = "#!/bin/sh\nexec sleep infinity\n"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: dict[str, str]
    depends: str = ""


def packages() -> list[Package]:
    pkgs: list[Package] = []
    for driver in (DRIVER, DECOY_DRIVER):
        v = f"{driver}-1"
        pkgs += [
            Package("nvidia-persistenced", v, {"usr/bin/nvidia-persistenced": SLEEPER,
                                               "lib/systemd/system/nvidia-persistenced.service": PERSISTENCED_UNIT}),
            Package("cuda-drivers-535", v, {"usr/share/doc/cuda-drivers-535/README": "stand-in\n"},
                    depends=f"nvidia-persistenced (= {v})"),
            Package("nvidia-fabricmanager-535", v, {"usr/bin/nv-fabricmanager": SLEEPER,
                                                    "lib/systemd/system/nvidia-fabricmanager.service":
                                                        FABRIC_MANAGER_UNIT}),
        ]
    pkgs += [
        Package("cuda-toolkit-12-2", "12.2.2-1", {"usr/local/cuda-12.2/bin/nvcc": "#!/bin/sh\necho 'release 12.2'\n"}),
        Package("nvidia-container-toolkit-base", CONTAINER_TOOLKIT, {"usr/bin/nvidia-ctk": "#!/bin/sh\nexit 0\n"}),
        Package("nvidia-container-toolkit", CONTAINER_TOOLKIT, {"usr/share/doc/nvidia-container-toolkit/README": "x\n"},
                depends=f"nvidia-container-toolkit-base (= {CONTAINER_TOOLKIT})"),
        Package("nvidia-container-toolkit-base", "1.99.0-1", {"usr/bin/nvidia-ctk": "#!/bin/sh\nexit 0\n"}),
    ]
    return pkgs


def _build_deb(pkg: Package, out: Path, scratch: Path) -> None:
    tree = scratch / f"{pkg.name}_{pkg.version}"
    (tree / "DEBIAN").mkdir(parents=True)
    control = (f"Package: {pkg.name}\nVersion: {pkg.version}\nArchitecture: amd64\n"
               f"Maintainer: gpufleet tests <tests@gpufleet.invalid>\nDescription: stand-in for NVIDIA's {pkg.name}\n")
    if pkg.depends:
        control += f"Depends: {pkg.depends}\n"
    (tree / "DEBIAN/control").write_text(control)
    for rel, text in pkg.files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if "/bin/" in f"/{rel}" else 0o644)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree),
                    str(out / f"{pkg.name}_{pkg.version}_amd64.deb")], check=True, capture_output=True)


def _release(repo: Path) -> str:
    lines = ["Origin: gpufleet-tests", "Label: gpufleet-tests", "Architectures: amd64",
             f"Date: {formatdate(usegmt=True)}", "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


def build(root: Path) -> str:
    """Build and sign the repository under ``root``; return the ASCII-armoured public key.

    It is served twice, as ``cuda/`` and ``container/``, because apt refuses one URL listed in
    two sources files with different keyrings, and the roles add NVIDIA's two repositories.
    """
    repo = root / "cuda"
    repo.mkdir(parents=True)
    (root / "container").symlink_to("cuda")
    scratch = root / "debs-src"
    for pkg in packages():
        _build_deb(pkg, repo, scratch)
    listing = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, capture_output=True,
                             check=True).stdout
    (repo / "Packages").write_bytes(listing)
    (repo / "Packages.gz").write_bytes(gzip.compress(listing))
    (repo / "Release").write_text(_release(repo))
    gnupg = root / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run([*gpg, "--quick-gen-key", "gpufleet test repo", "ed25519", "sign", "never"], env=env,
                       check=True, capture_output=True)
        subprocess.run([*gpg, "--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release")], env=env,
                       check=True, capture_output=True)
        key = subprocess.run([*gpg, "--armor", "--export"], env=env, check=True, capture_output=True, text=True)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)
    (repo / "key.asc").write_text(key.stdout)
    return key.stdout


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1; yields its base URL (with a trailing slash)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
