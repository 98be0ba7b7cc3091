"""Fault-injection tests: each injects one fault into real parts (the moto server process, real agents,
real Terraform) and asserts what must hold. The training agents' fixtures are shared with tests/training;
serving agents here reach the emulator through a fault-injecting proxy (tests/support/faultproxy.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpufleet.local.emulator import Emulator
from tests.serving.conftest import Agent, ServingAgents
from tests.serving.conftest import Team as ServingTeam
from tests.support.aws import create_team_resources
from tests.support.faultproxy import FaultProxy
from tests.training.conftest import start_agent, team

__all__ = ["fault_proxy", "serving_team", "start_agent", "start_serving_agent", "team"]

_teams = iter(range(10_000))


@pytest.fixture
def serving_team(moto_server: Emulator) -> ServingTeam:
    return ServingTeam(moto_server, create_team_resources(moto_server, platform="flt", team=f"s{next(_teams)}"))


@pytest.fixture
def fault_proxy(moto_server: Emulator) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint) as proxy:
        yield proxy


@pytest.fixture
def start_serving_agent(serving_team: ServingTeam, fault_proxy: FaultProxy, tmp_path: Path,
                        repo_env: dict[str, str]) -> Iterator[Callable[..., Agent]]:
    """Start ``gpufleet-agent run`` serving ``endpoint``/blue, its AWS calls through the fault proxy. The same
    ``port`` again is the same host restarted: same config, same work root (``tmp_path/opt-ml-<port>``)."""
    agents = ServingAgents(tmp_path, repo_env)

    def start(endpoint: str, port: int | None = None, **serving: object) -> Agent:
        return agents.start(serving_team.runtime, fault_proxy.url, endpoint, "blue", port, serving)

    yield start
    agents.stop_all()
