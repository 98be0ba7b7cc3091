"""Fixtures for the CLI tests: a workspace with a running local cloud over the session's moto server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.callrecord import recording_env
from gpufleet.local import cloud, emulator
from gpufleet.local.emulator import Emulator
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.workspace import calls_dir, teams_dir
from tests.cli.endpoints import create_endpoint_resources
from tests.support.aws import create_team_resources


def write_runtime(root: Path, rt: TeamRuntime) -> None:
    teams_dir(root).mkdir(parents=True, exist_ok=True)
    (teams_dir(root) / f"{rt.team}.json").write_text(rt.to_json())


@pytest.fixture
def served_team(moto_server: Emulator, tmp_path: Path, repo_env: dict[str, str],
                monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[tuple[Path, TeamRuntime]]:
    """A team with one endpoint ("web", one blue instance) and a local cloud following it."""
    with local_cloud_team(moto_server, tmp_path, repo_env, monkeypatch, request) as served:
        yield served


@contextlib.contextmanager
def local_cloud_team(moto_server: Emulator, tmp_path: Path, repo_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                     request: pytest.FixtureRequest, image: str | None = None) -> Iterator[tuple[Path, TeamRuntime]]:
    """A team with one endpoint ("web", one blue instance; ``image``: its container) and a local cloud
    following it.

    The workspace records the session's moto server as its emulator, so the CLI and the rollout find it
    as they would after `gpufleet local up`.
    """
    root = tmp_path / ".gpufleet"
    team = f"t{abs(hash(request.node.name)) % 10**6}"
    rt = create_endpoint_resources(moto_server, create_team_resources(moto_server, "cli", team), "web", image=image)
    root.mkdir()
    emulator.record_path(root).write_text(emulator.record_path(moto_server_root(moto_server)).read_text())
    write_runtime(root, rt)
    monkeypatch.setenv("GPUFLEET_HOME", str(root))
    monkeypatch.setenv("PYTHONPATH", repo_env["PYTHONPATH"])
    # The test's own calls record as the operator's, as the CLI's do; the local cloud's agents as their roles.
    for key, value in recording_env(calls_dir(root), "operator", team).items():
        monkeypatch.setenv(key, value)
    cloud.start(root, moto_server)
    try:
        yield root, rt
    finally:
        cloud.stop(root)


def moto_server_root(emu: Emulator) -> Path:
    return Path(emu.log).parent


@pytest.fixture(autouse=True)
def _no_target_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUFLEET_TARGET", raising=False)
    monkeypatch.delenv("GPUFLEET_TEAM", raising=False)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
