"""A booted Debian host for the playbooks: an overlayfs copy of the cached rootfs under systemd-nspawn.

By default the container shares the host network, so its sshd listens on a spare 127.0.0.1 port and the
services it runs (the agent's /healthz) answer on 127.0.0.1 too. With ``private_network`` it gets its own
network namespace (loopback only, and CAP_NET_ADMIN there, so a firewall rule loaded inside stays inside):
its sshd listens on 127.0.0.1 of that namespace, and ``ssh`` (or anything, via ``in_netns``) enters it.
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

from gpufleet.ports import free_port

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
    upper: Path                    # the overlay's upper layer: what this boot changed
    netns: Path | None = None      # the container's own network namespace, with private_network

    def in_netns(self, argv: list[str]) -> list[str]:
        """``argv`` run in the container's network namespace (this machine's files and binaries)."""
        return ["nsenter", f"--net={self.netns}", "--", *argv] if self.netns else argv

    def ssh(self, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-i", str(self.key), "-p", str(self.port), *SSH_OPTIONS, "root@127.0.0.1", command]
        return subprocess.run(self.in_netns(argv), capture_output=True, text=True, check=check, timeout=timeout)

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
        if target.netns is not None:
            if target.ssh("true", check=False, timeout=10).returncode == 0:
                return
        else:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", target.port), timeout=1):
                if target.ssh("true", check=False).returncode == 0:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"{target.name}: no ssh on port {target.port} after {timeout_s:.0f} s")


def _parent(proc_dir: Path) -> int:
    return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1]) if proc_dir.name.isdigit() else 0


def _container_netns(nspawn_pid: int, timeout_s: float = 30) -> Path:
    """The network namespace of the container nspawn started (its PID 1's), once it exists."""
    mine = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if _parent(entry) == nspawn_pid and os.readlink(entry / "ns" / "net") != mine:
                    return entry / "ns" / "net"
        time.sleep(0.1)
    raise RuntimeError(f"nspawn {nspawn_pid}: no container network namespace after {timeout_s:.0f} s")


def boot(rootfs: Path, workdir: Path, key: Path, name: str, binds: dict[Path, str] | None = None,
         private_network: bool = False, above: Path | None = None) -> Target:
    """Boot an overlay of ``rootfs`` (changes land in ``workdir``); ssh is up when this returns.
    ``above``: a layer stacked over the rootfs (an earlier boot's ``upper``, to boot that host again)."""
    upper, work, merged = (workdir / d for d in ("upper", "work", "root"))
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    lower = f"{above}:{rootfs}" if above else str(rootfs)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], check=True)
    port = free_port()
    _prepare(merged, port, key)
    bind_args = [f"--bind={host}:{inside}" for host, inside in (binds or {}).items()]
    network = ["--private-network"] if private_network else []
    with (workdir / "console.log").open("wb") as console:
        # --register=no --keep-unit: PID 1 here is not systemd, so there is no machined to register with.
        proc = subprocess.Popen(["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-M", name,
                                 "-D", str(merged), *network, *bind_args, "-b"],
                                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    target = Target(name=name, root=merged, port=port, key=key, proc=proc, workdir=workdir, upper=upper)
    try:
        if private_network:
            target.netns = _container_netns(proc.pid)
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
