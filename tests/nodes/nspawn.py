"""A booted Debian host for the playbooks: an overlayfs copy of the cached rootfs under systemd-nspawn.

The container shares the host network, so its sshd listens on a spare 127.0.0.1 port and the
services it runs (the agent's /healthz) answer on 127.0.0.1 too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gpufleet.local.emulator import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOTFS_CACHE = Path(os.environ.get("GPUFLEET_ROOTFS_CACHE", "/var/cache/gpufleet/rootfs"))
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]


def build_rootfs() -> Path:
    """The cached rootfs, built by scripts/build-test-rootfs the first time (about 70 s)."""
    subprocess.run([str(REPO_ROOT / "scripts" / "build-test-rootfs"), str(ROOTFS_CACHE)], check=True,
                   timeout=900, stdout=subprocess.DEVNULL)
    return ROOTFS_CACHE


def ssh_keypair(folder: Path) -> Path:
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@dataclass
class Target:
    name: str
    root: Path                     # the merged tree, as the target sees its /
    port: int
    key: Path
    proc: subprocess.Popen[bytes]
    workdir: Path

    def ssh(self, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", "-i", str(self.key), "-p", str(self.port), *SSH_OPTIONS, "root@127.0.0.1",
                               command], capture_output=True, text=True, check=check, timeout=timeout)

    def inventory_vars(self) -> dict[str, object]:
        return {"ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": " ".join(SSH_OPTIONS)}


def _prepare(root: Path, port: int, key: Path) -> None:
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    (root / "root/.ssh/authorized_keys").write_text(key.with_suffix(".pub").read_text())
    (root / "etc/ssh/sshd_config.d/gpufleet-test.conf").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nPasswordAuthentication no\nUseDNS no\n")


def _wait_for_ssh(target: Target, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise RuntimeError(f"{target.name}: nspawn exited; see {target.workdir / 'console.log'}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", target.port), timeout=1):
            if target.ssh("true", check=False).returncode == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{target.name}: no ssh on port {target.port} after {timeout_s:.0f} s")


def boot(rootfs: Path, workdir: Path, key: Path, name: str, binds: dict[Path, str] | None = None) -> Target:
    """Boot an overlay of ``rootfs`` (changes land in ``workdir``); ssh is up when this returns."""
    upper, work, merged = (workdir / d for d in ("upper", "work", "root"))
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(merged)], check=True)
    port = free_port()
    _prepare(merged, port, key)
    bind_args = [f"--bind={host}:{inside}" for host, inside in (binds or {}).items()]
    with (workdir / "console.log").open("wb") as console:
        # --register=no --keep-unit: PID 1 here is not systemd, so there is no machined to register with.
        proc = subprocess.Popen(["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-M", name,
                                 "-D", str(merged), *bind_args, "-b"],
                                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    target = Target(name=name, root=merged, port=port, key=key, proc=proc, workdir=workdir)
    try:
        _wait_for_ssh(target)
    except BaseException:
        shutdown(target)
        raise
    return target


def shutdown(target: Target, timeout_s: float = 15) -> None:
    """Power the container off (nspawn turns SIGTERM into an orderly shutdown), then unmount it."""
    if target.proc.poll() is None:
        target.proc.send_signal(signal.SIGTERM)
        try:
            target.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(target.proc.pid, signal.SIGKILL)
            target.proc.wait(timeout=10)
    subprocess.run(["umount", str(target.root)], check=False, capture_output=True)
