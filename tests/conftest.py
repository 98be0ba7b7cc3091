"""Shared fixtures: a real moto server per test session (per xdist worker), on a free port; and the
grouping that lets ``scripts/test`` run modules side by side (pytest-xdist, ``--dist loadgroup``)."""

from __future__ import annotations

import os
from collections import Counter
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


# Wall minutes of the longest groups in a fresh-clone run with 4 workers on 2 cores (2026-12-03; the DR drill
# 9 of the suite's 20). Only the order of starting depends on them: longest first, so the last group to start
# is a short one instead of the drill (measured: the drill started at 8 min and ended the run at 19 min 57 s,
# with the machine idle 30-100 % for its last 5 min).
GROUP_MINUTES = {
    "nodes": 10.5, "tests/dr/test_drill.py": 9, "tests/cli/test_demo_e2e.py": 7,
    "tests/stacks/test_e2e_local.py": 5.5, "tests/faults/test_deploy_interrupted.py": 4,
    "tests/foundation/test_synth.py": 2, "tests/foundation/test_cdktf_cli.py": 2,
    "tests/cli/test_rollout_safety.py": 1.8, "tests/faults/test_two_deploys.py": 1.5,
    "tests/serving/test_agent_process.py": 1.6, "tests/training/test_resilience.py": 1.6,
    "tests/faults/test_retried_writes.py": 1.3, "tests/cli/test_endpoint_cli.py": 1.3,
}


def pytest_configure(config: pytest.Config) -> None:
    """Keep the collection order below as the order groups start: xdist otherwise sorts groups by their
    number of tests, which starts the one-test DR drill near the end."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist: group every test (see ``xdist_group_of``) and start the longest groups first
    (``GROUP_MINUTES``, then the other slow or e2e ones, then by number of tests), so the long end-to-end
    ones overlap instead of one of them starting last."""
    if not hasattr(config, "workerinput"):  # only xdist's workers collect for scheduling
        return
    groups = {id(item): xdist_group_of(item) for item in items}
    slow = {groups[id(item)] for item in items
            if item.get_closest_marker("slow") or item.get_closest_marker("e2e")}
    sizes = Counter(groups.values())
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(groups[id(item)]))

    def start_order(item: pytest.Item) -> tuple[float, bool, int, str]:
        group = groups[id(item)]   # the name last: a group's tests stay together
        return -GROUP_MINUTES.get(group, 0.0), group not in slow, -sizes[group], group

    items.sort(key=start_order)  # stable: file order kept within each group


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
