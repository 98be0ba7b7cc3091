"""Who job code runs as: an unprivileged user distinct from the agent's, in its own session, with the
instance metadata service (and so the host role's credentials) firewalled off for that user's uid.

The Ansible role creates the user and the nftables rule, and gives the agent's service just the
capabilities to switch to that user (CAP_SETUID, CAP_SETGID, CAP_CHOWN, CAP_DAC_READ_SEARCH, CAP_KILL);
on a real host the agent refuses to run jobs when the rule is missing. Where the agent can do neither
(local mode, a laptop) jobs run as the agent's own user, and the agent says so in a warning.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.errors import UserInputError

log = logging.getLogger("gpufleet.agent.isolation")
IMDS_ADDRESS = "169.254.169.254"
# Capability bits (linux/capability.h) the agent needs to start job code as another user.
CAP_CHOWN, CAP_DAC_READ_SEARCH, CAP_KILL, CAP_SETGID, CAP_SETUID = 0, 2, 5, 6, 7
NEEDED_CAPS = (CAP_CHOWN, CAP_DAC_READ_SEARCH, CAP_KILL, CAP_SETGID, CAP_SETUID)


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int
    isolated: bool   # False: the agent's own user (not root, so it cannot switch)

    def popen_args(self) -> dict[str, Any]:
        """``subprocess.Popen`` keyword arguments that start the job as this user, with no extra groups."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if self.isolated else {}

    @property
    def owner(self) -> tuple[int, int] | None:
        return (self.uid, self.gid) if self.isolated else None


def can_switch_users(status: str | None = None) -> bool:
    """Root, or holding the capabilities the service unit grants (``CapEff`` of /proc/self/status)."""
    if os.geteuid() == 0:
        return True
    text = status if status is not None else Path("/proc/self/status").read_text()
    effective = next((int(line.split()[1], 16) for line in text.splitlines() if line.startswith("CapEff:")), 0)
    return all(effective >> bit & 1 for bit in NEEDED_CAPS)


def resolve_job_user(name: str, local: bool) -> JobUser:
    """``local``: local mode, whose agents stand in for hosts on one machine and never switch users."""
    if local or not can_switch_users():
        me = pwd.getpwuid(os.geteuid())
        why = "in local mode" if local else "the agent can not switch users (neither root nor given the capabilities)"
        log.warning("%s: jobs run as the agent's own user %r, with its access to the agent's files and "
                    "credentials (on a host, run the agent as root, as the Ansible role does, to isolate them)",
                    why, me.pw_name)
        return JobUser(me.pw_name, me.pw_uid, me.pw_gid, isolated=False)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UserInputError([f"training.job_user: no Unix user {name!r} on this host "
                              "(run the gpufleet_agent Ansible role, which creates it)"]) from None
    if entry.pw_uid == 0:
        raise UserInputError([f"training.job_user: {name!r} is root (name an unprivileged user)"])
    return JobUser(name, entry.pw_uid, entry.pw_gid, isolated=True)


def _ruleset() -> str:
    """The firewall rules as text: nftables if present, else iptables (the nft backend shows in both)."""
    for argv in (["nft", "list", "ruleset"], ["iptables", "-S", "OUTPUT"]):
        if shutil.which(argv[0]):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout
    return ""


def imds_blocked_for(user: JobUser, ruleset: str | None = None) -> bool:
    """Whether a rule drops or rejects this user's packets to IMDS (nftables ``meta skuid``, or iptables
    ``-m owner --uid-owner``; either may show the uid or the user name)."""
    for line in (ruleset if ruleset is not None else _ruleset()).splitlines():
        words = line.replace('"', " ").split()
        names_uid = ("skuid" in words or "--uid-owner" in words) and bool({str(user.uid), user.name} & set(words))
        if names_uid and any(IMDS_ADDRESS in w for w in words) and ({"drop", "reject", "DROP", "REJECT"} & set(words)):
            return True
    return False


def require_imds_block(user: JobUser) -> None:
    """On a real host: refuse to run jobs unless the job user is firewalled off IMDS."""
    if user.isolated and not imds_blocked_for(user):
        raise UserInputError([f"training.job_user: no firewall rule drops {user.name!r} (uid {user.uid}) traffic "
                              f"to {IMDS_ADDRESS}, so job code could take the host role's credentials "
                              "(run the gpufleet_agent Ansible role, which adds it)"])


def hand_over(paths: list[Path], user: JobUser) -> None:
    """Give the job user the job's working directories (code, inputs, model, output, checkpoints)."""
    if user.isolated:
        _chown_tree(paths, user.uid, user.gid)


def hand_back(paths: list[Path], user: JobUser) -> None:
    """Take the job's directories back once it ended, so the agent can package and clear them."""
    if user.isolated:
        _chown_tree(paths, os.geteuid(), os.getegid())


def open_work_root(root: Path, user: JobUser) -> None:
    """Let the job user pass through the work root to the folders handed to it, and nothing more: the
    root's group becomes the job user's with search (x) only, so it can neither list the root nor open
    what the agent keeps there (UMask 0027 leaves the agent's own files group- and world-closed)."""
    if user.isolated:
        root.mkdir(parents=True, exist_ok=True)
        os.chown(root, -1, user.gid)
        root.chmod(0o710)


def _chown_tree(paths: list[Path], uid: int, gid: int) -> None:
    for top in paths:
        for path in [top, *top.rglob("*")] if top.exists() else []:
            os.chown(path, uid, gid, follow_symlinks=False)
