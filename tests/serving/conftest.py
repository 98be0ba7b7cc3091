"""Serving fixtures: real TorchScript models, artifacts in a real moto server, agents as real processes.

Models are trained or built here with real torch. No GPU exists on these machines; GPU paths are
tested with a fake NVML module where a test says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn

from gpufleet.agent.serving.app import Limits, ServingApp
from gpufleet.agent.serving.handler import load_handler
from gpufleet.agent.serving.metrics import ServingMetrics
from gpufleet.agent.serving.models import LoadedModel, ModelSlot, build_model
from gpufleet.agent.training.output import package_model
from gpufleet.local.emulator import Emulator, stop_process
from gpufleet.ports import free_port
from gpufleet.schema.runtime import TeamRuntime
from tests.support.agents import start_agent_process
from tests.support.audit import recording
from tests.support.aws import client, create_team_resources

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Digits:
    model_dir: Path  # what the training example saved: a torch.export model.pt2
    x_test: Any      # raw pixel values 0-16, float32 (n, 64)
    y_test: Any      # int (n,)


def train_digits_model(work: Path, env: dict[str, str]) -> Digits:
    """A real run of the training example (examples/training/digits/train.py, the script the training
    agent runs), saving its torch.export model.pt2; the held-out split is rebuilt the way it splits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    model_dir = work / "model"
    subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "training" / "digits" / "train.py"),
                    "--epochs", "8", "--model-dir", str(model_dir), "--output-data-dir", str(work / "output"),
                    "--checkpoint-dir", str(work / "checkpoints")], env=env, check=True, capture_output=True)
    x, y = load_digits(return_X_y=True)
    _, x_test, _, y_test = train_test_split(x.astype("float32"), y, test_size=0.2, random_state=0, stratify=y)
    return Digits(model_dir, x_test, y_test)


def pack(model_dir: Path) -> bytes:
    """model.tar.gz bytes, packed by the training agent's own packager."""
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "model.tar.gz"
        package_model(model_dir, tarball)
        return tarball.read_bytes()


def scripted_model_dir(work: Path, module: torch.nn.Module, code: str | None = None) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module.eval()).save(str(work / "model.pt"))
    if code is not None:
        (work / "code").mkdir(exist_ok=True)
        (work / "code" / "inference.py").write_text(code)
    return work


class Constant(torch.nn.Module):
    """Answers ``value`` for every row: makes a model version visible in its predictions."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1), self.value)


@dataclass
class Team:
    emu: Emulator
    runtime: TeamRuntime

    def client(self, service: str) -> Any:
        return client(self.emu, service)

    def publish_model(self, name: str, version: int, tarball: bytes, sha256: str | None = None) -> str:
        """Upload ``models/<name>/<version>/model.tar.gz`` and put the registry record, as training does,
        and the operator's approval of that sha256, as `gpufleet model approve` does."""
        key = f"models/{name}/{version}/model.tar.gz"
        self.client("s3").put_object(Bucket=self.runtime.buckets.artifacts, Key=key, Body=tarball)
        uri = f"s3://{self.runtime.buckets.artifacts}/{key}"
        pinned = {"model_name": {"S": name}, "version": {"N": str(version)}, "artifact_uri": {"S": uri},
                  "sha256": {"S": sha256 or hashlib.sha256(tarball).hexdigest()}, "status": {"S": "Approved"}}
        self.client("dynamodb").put_item(TableName=self.runtime.tables.models, Item={
            **pinned, "created_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ")}})
        self.client("dynamodb").put_item(TableName=self.runtime.tables.approvals, Item=pinned)
        return uri

    def point_endpoint(self, endpoint: str, variant: str, name: str, version: int) -> None:
        self.client("dynamodb").put_item(TableName=self.runtime.tables.endpoints, Item={
            "endpoint": {"S": endpoint}, "variants": {"M": {variant: {"M": {
                "model": {"S": name}, "version": {"N": str(version)}, "weight": {"N": "100"}}}}}})


_teams = iter(range(10_000))


@pytest.fixture
def team(moto_server: Emulator) -> Team:
    return Team(moto_server, create_team_resources(moto_server, platform="srv", team=f"t{next(_teams)}"))


@dataclass
class Agent:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"agent exited: {self.log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"agent not ready: {self.log.read_text()[-2000:]}")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


class ServingAgents:
    """Serving agents started as real processes under ``work``; ``stop_all`` stops those still running."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env, self.started = work, env, list[Agent]()

    def start(self, runtime: TeamRuntime, aws_endpoint_url: str, endpoint: str, variant: str, port: int | None,
              serving: dict[str, Any], **extra: Any) -> Agent:
        """An agent serving ``endpoint``/``variant`` on ``port`` (a free one if None). The same ``port`` again is
        the same host restarted: same config, same work root (``work/opt-ml-<port>``); each start has its own
        log. ``serving`` overrides the fast test timings; ``extra`` adds top-level keys (pip, containers)."""
        port = port or free_port()
        config = {"role": "serving", "team": json.loads(runtime.to_json()), "endpoint": endpoint,
                  "variant": variant, "serving_port": port, "health_port": 0,
                  "work_root": str(self.work / f"opt-ml-{port}"),
                  "local": {"aws_endpoint_url": aws_endpoint_url, "instance_id": f"i-{port}"},
                  "serving": {"poll_interval_s": 0.2, "metrics_interval_s": 1.0, **serving}, **extra}
        log = self.work / f"agent-{port}-{len(self.started)}.log"
        process = start_agent_process(config, self.work / f"agent-{port}.json", log, self.env)
        agent = Agent(f"http://127.0.0.1:{port}", process, log)
        self.started.append(agent)
        return agent

    def stop_all(self) -> None:
        for agent in self.started:
            if agent.process.poll() is None:
                stop_process(agent.process.pid, 20)   # SIGTERM, 20 s to drain, then SIGKILL


@pytest.fixture
def start_agent(team: Team, tmp_path: Path, repo_env: dict[str, str]) -> Iterator[Callable[..., Agent]]:
    """Start ``gpufleet-agent run`` as a real process serving ``endpoint``/``variant`` from moto."""
    agents = ServingAgents(tmp_path, recording(repo_env, tmp_path / "calls"))

    def start(endpoint: str, variant: str = "blue", port: int | None = None, pip: dict[str, Any] | None = None,
              runtime: TeamRuntime | None = None, containers: dict[str, Any] | None = None, **serving: Any) -> Agent:
        return agents.start(runtime or team.runtime, team.emu.endpoint, endpoint, variant, port, serving,
                            pip=pip or {}, containers=containers or {})

    yield start
    agents.stop_all()


@dataclass
class InProcess:
    url: str
    app: ServingApp
    slot: ModelSlot
    metrics: ServingMetrics


def loaded(model_dir: Path, name: str = "m", version: int = 1, max_batch: int = 64,
           max_delay_s: float = 0.002, metrics: ServingMetrics | None = None) -> LoadedModel:
    handler = load_handler(model_dir, torch.device("cpu"))
    observe = metrics.batch_done if metrics else None
    return build_model(name, version, handler, max_batch, max_delay_s, observe)


@pytest.fixture
def serve_in_process() -> Iterator[Callable[..., InProcess]]:
    """The serving app on a real uvicorn socket in this process (a thread), without S3 or the watcher."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(model_dir: Path | None, max_payload: int = 1 << 20, timeout_s: float = 5.0,
              **batch: Any) -> InProcess:
        slot, metrics = ModelSlot(), ServingMetrics()
        if model_dir is not None:
            slot.current = loaded(model_dir, metrics=metrics, **batch)
        app = ServingApp(slot, metrics, Limits(max_payload, timeout_s))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="off", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return InProcess(f"http://127.0.0.1:{port}", app, slot, metrics)

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}", "OMP_NUM_THREADS": "1"}
    return train_digits_model(tmp_path_factory.mktemp("digits"), env)





@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One in-process server for all fuzzed examples (hypothesis reruns the test body, not fixtures)."""
    model_dir = scripted_model_dir(tmp_path_factory.mktemp("fuzz"), torch.nn.Linear(4, 2))
    slot, metrics = ModelSlot(), ServingMetrics()
    slot.current = loaded(model_dir, metrics=metrics)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(ServingApp(slot, metrics, Limits(200, 5.0)), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        yield http
    server.should_exit = True
    thread.join(10)
