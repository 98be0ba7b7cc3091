"""Shared fixtures: a real moto server per test session (per xdist worker), on a free port; and the
grouping that lets ``scripts/test`` run modules side by side (pytest-xdist, ``--dist loadgroup``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.local import emulator
from gpufleet.local.emulator import Emulator

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Directories whose tests share machine-wide resources and must run one at a time, in one worker:
# tests/nodes boots systemd-nspawn targets from one cached rootfs (and may build that cache).
EXCLUSIVE_DIRS = {"tests/nodes": "nodes"}


def xdist_group_of(item: pytest.Item) -> str:
    """A test's xdist group: its own ``xdist_group`` marker, its directory's exclusive group, else its
    module, so module- and session-scoped fixtures (a deployed stack, a trained model) are built once."""
    marker = item.get_closest_marker("xdist_group")
    if marker is not None:
        return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
    module = item.nodeid.split("::", 1)[0]
    return next((group for prefix, group in EXCLUSIVE_DIRS.items() if module.startswith(prefix + "/")), module)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist: group every test (see ``xdist_group_of``) and schedule the slow groups first, so the
    long end-to-end ones overlap instead of one of them starting last."""
    if not hasattr(config, "workerinput"):  # only xdist's workers collect for scheduling
        return
    groups = {id(item): xdist_group_of(item) for item in items}
    slow = {groups[id(item)] for item in items
            if item.get_closest_marker("slow") or item.get_closest_marker("e2e")}
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(groups[id(item)]))
    items.sort(key=lambda item: groups[id(item)] not in slow)  # stable: file order kept within each group


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
