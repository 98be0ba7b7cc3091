"""Picking a free TCP port for a server that some other process binds moments later.

Local mode and the agents pick ports this way for the emulator, the local agents' serving and health
ports, an endpoint's router, a serving container, a one-process job's ``MASTER_PORT`` and node 0's
rendezvous store (``rendezvous_port: 0``). The server binds the port seconds after the pick, once its
process has started. A port from the kernel's ephemeral range may meanwhile become an outgoing
connection's source port, and the bind then fails with EADDRINUSE (a CI run met it: a two-node job's
store). So the pick is a random free port outside that range, which neither ``connect()`` nor
``bind(0)`` hands out.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
LOWEST_PICKED_PORT = 20000   # below: ports that well-known services (and their tests) listen on
TRIES = 64
# Not the module's generator: a process that seeds it (a training script, a test) would pick alike.
_PICKER = random.SystemRandom()


def free_port(address: str = "127.0.0.1") -> int:
    """A port free on ``address`` now, outside the ephemeral range (inside it if the range leaves none)."""
    low, high = ephemeral_range()
    candidates = [*range(LOWEST_PICKED_PORT, low), *range(high + 1, 65536)]
    for port in _PICKER.sample(candidates, min(len(candidates), TRIES)):
        if _bindable(address, port):
            return port
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' source ports (Linux's default where unreadable)."""
    try:
        low, high = (int(v) for v in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL_RANGE
    return low, high


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True
