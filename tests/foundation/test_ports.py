"""gpufleet.ports: a port picked now and bound later lies outside the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from gpufleet import ports


def _range_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, low: int, high: int) -> None:
    path = tmp_path / "ip_local_port_range"
    path.write_text(f"{low}\t{high}\n")   # the kernel's format
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", path)


def test_picks_are_free_outside_the_range_and_a_seeded_process_does_not_repeat_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _range_file(tmp_path, monkeypatch, 21000, 64000)
    picks = set()
    for _ in range(20):
        random.seed(7)   # as a training script or a test may: the picker must not follow it
        port = ports.free_port()
        assert 20000 <= port < 21000 or port > 64000
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
        picks.add(port)
    assert len(picks) > 10


def test_a_range_that_leaves_no_port_outside_falls_back_to_the_kernels_pick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _range_file(tmp_path, monkeypatch, 1024, 65535)
    port = ports.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_range() == ports.LINUX_DEFAULT_EPHEMERAL_RANGE
