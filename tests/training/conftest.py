"""Training-agent fixtures: a team in the moto server, agents as real subprocesses, job helpers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpufleet.aws import AwsClients
from gpufleet.jobs.submit import submit_job
from gpufleet.local.emulator import Emulator
from gpufleet.schema.job_spec import parse_job_spec
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.jobs import get_job
from tests.conftest import REPO_ROOT
from tests.support.agents import start_agent_process
from tests.support.audit import recording
from tests.support.aws import create_team_resources

DIGITS = REPO_ROOT / "examples" / "training" / "digits"
SCRIPTS = Path(__file__).parent / "scripts"
# Tight timings so that hand-overs take seconds, not the production minutes.
FAST = {"poll_wait_s": 1, "visibility_timeout_s": 4, "heartbeat_s": 1.0, "stale_after_s": 4.0,
        "stop_grace_s": 15.0, "spot_poll_s": 0.3, "log_flush_s": 1.0, "rendezvous_port": 0}


@dataclass
class Team:
    runtime: TeamRuntime
    clients: AwsClients
    emu: Emulator

    def job(self, job_id: str) -> dict[str, Any]:
        rec = get_job(self.clients, self.runtime, job_id)
        assert rec is not None
        return rec

    def submit(self, source: Path | None, **spec: Any) -> str:
        base = {"name": "job", "team": self.runtime.team, "entry_point": "train.py"}
        return submit_job(self.clients, self.runtime, parse_job_spec({**base, **spec}), source)

    def wait_status(self, job_id: str, statuses: tuple[str, ...], timeout_s: float = 120) -> dict[str, Any]:
        return wait_for(lambda: (r := self.job(job_id))["status"] in statuses and r, timeout_s,
                        f"job {job_id} to reach {statuses}")


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture
def team(moto_server: Emulator) -> Team:
    runtime = create_team_resources(moto_server, platform="tr", team=f"t{uuid.uuid4().hex[:8]}")
    return Team(runtime, AwsClients.create(runtime.region, moto_server.endpoint), moto_server)


@dataclass
class AgentProc:
    proc: subprocess.Popen[bytes]
    work_root: Path
    log_path: Path

    def job_log(self) -> str:
        path = self.work_root / "output" / "job.log"
        return path.read_text() if path.exists() else ""

    def agent_log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def start_agent(team: Team, tmp_path: Path, repo_env: dict[str, str]) -> Iterator[Callable[..., AgentProc]]:
    """Start training agents as subprocesses (``python -m gpufleet.agent run``); all stopped at teardown."""
    started: list[AgentProc] = []

    def start(name: str, imds_endpoint: str | None = None, health_port: int = 0, pip: dict[str, Any] | None = None,
              containers: dict[str, Any] | None = None, **training: Any) -> AgentProc:
        root = tmp_path / name
        root.mkdir(exist_ok=True)   # a test may have mounted a small disk at root/ml first
        local: dict[str, Any] = {"aws_endpoint_url": team.emu.endpoint, "instance_id": name}
        if imds_endpoint:
            local["imds_endpoint"] = imds_endpoint
        config = {"role": "training", "team": json.loads(team.runtime.to_json()), "work_root": str(root / "ml"),
                  "health_port": health_port, "local": local, "training": {**FAST, **training}, "pip": pip or {},
                  "containers": containers or {}}
        log_path = root / "agent.log"
        # two cores shared: no thread oversubscription; every agent records its calls for the audit
        env = recording({**repo_env, "OMP_NUM_THREADS": "1"}, tmp_path / "calls")
        agent = AgentProc(start_agent_process(config, root / "agent.json", log_path, env), root / "ml", log_path)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        stop_agent(agent)


def stop_agent(agent: AgentProc, timeout_s: float = 30) -> int:
    if agent.proc.poll() is None:
        agent.proc.send_signal(signal.SIGTERM)
        try:
            agent.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            agent.proc.kill()
    return agent.proc.wait()


def processes_with_env(key: str, value: str) -> list[int]:
    """Live processes whose environment holds ``key=value`` (how tests find a job's workers)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                stat = Path(f"/proc/{entry}/stat").read_text()
                if needle in env and stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry))
    return found
