"""Fault-injection tests: each injects one fault into real parts (the moto server process, real agents,
real Terraform) and asserts what must hold. The training agents' fixtures are shared with tests/training;
serving agents here reach the emulator through a fault-injecting proxy (tests/support/faultproxy.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpufleet.local.emulator import Emulator, free_port, stop_process
from tests.serving.conftest import Agent
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
    started: list[Agent] = []

    def start(endpoint: str, port: int | None = None, **serving: object) -> Agent:
        port = port or free_port()
        config = {"role": "serving", "team": json.loads(serving_team.runtime.to_json()), "endpoint": endpoint,
                  "variant": "blue", "serving_port": port, "health_port": 0,
                  "work_root": str(tmp_path / f"opt-ml-{port}"),
                  "local": {"aws_endpoint_url": fault_proxy.url, "instance_id": f"i-{port}"},
                  "serving": {"poll_interval_s": 0.2, "metrics_interval_s": 1.0, **serving}}
        path = tmp_path / f"agent-{port}.json"
        path.write_text(json.dumps(config))
        log = tmp_path / f"agent-{port}-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "gpufleet.agent", "run", "--config", str(path)],
                                    stdout=out, stderr=subprocess.STDOUT, env=repo_env)
        agent = Agent(f"http://127.0.0.1:{port}", proc, log)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.process.poll() is None:
            stop_process(agent.process.pid, 20)   # SIGTERM, 20 s to drain, then SIGKILL
