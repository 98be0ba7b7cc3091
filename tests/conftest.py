"""Shared fixtures: a real moto server per test session, on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.local import emulator
from gpufleet.local.emulator import Emulator

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A real moto server process shared by the session's tests (each test uses its own names)."""
    root = tmp_path_factory.mktemp("emulator")
    emu = emulator.start(root)
    yield emu
    emulator.stop(root)


@pytest.fixture
def repo_env() -> dict[str, str]:
    """Environment for subprocesses that must import this checkout's gpufleet (worktrees included)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
