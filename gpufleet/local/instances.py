"""Local instances: one ``gpufleet-agent`` process per unit of an ASG's desired capacity.

Stands in for EC2 in local mode. Raising an ASG's desired capacity starts agents; lowering it sends
SIGTERM to the newest ones, which drain and exit (SIGKILL only after a grace period). Each agent has its
folder under ``.gpufleet/agents/<instance-id>/``: config, log, work root and ``process.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpufleet.aws import LOCAL_CREDENTIALS
from gpufleet.ports import free_port
from gpufleet.schema import Variant
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.workspace import agents_dir

log = logging.getLogger("gpufleet.local.instances")
STOP_GRACE_S = 75.0   # the training agent's own SIGTERM-to-SIGKILL grace (60 s) plus its final uploads


@dataclass(frozen=True)
class AsgSpec:
    """An ASG the local cloud follows, and what its instances run."""

    name: str
    runtime: TeamRuntime
    role: str                    # training | serving
    endpoint: str | None = None
    variant: Variant | None = None


@dataclass
class LocalInstance:
    instance_id: str
    asg: str
    team: str
    role: str
    pid: int
    serving_port: int
    health_port: int
    started_at: float
    endpoint: str | None = None
    variant: str | None = None
    draining: bool = False   # scaled in: SIGTERM sent. The router deregisters it, as an ALB does.

    @property
    def folder_name(self) -> str:
        return self.instance_id


def read_instances(root: Path) -> list[LocalInstance]:
    """Every local instance recorded under ``root`` (running or not)."""
    out = []
    for path in sorted(agents_dir(root).glob("*/process.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            out.append(LocalInstance(**json.loads(path.read_text())))
    return out


def write_instance(root: Path, inst: LocalInstance) -> None:
    folder = agents_dir(root) / inst.instance_id
    tmp = folder / "process.json.tmp"
    tmp.write_text(json.dumps(asdict(inst)))
    tmp.replace(folder / "process.json")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


class LocalFleet:
    """Keeps the agent processes of each ASG equal to its desired capacity."""

    def __init__(self, root: Path, emulator_endpoint: str, agent_env: dict[str, str] | None = None) -> None:
        self.root, self.endpoint = root, emulator_endpoint
        self.env = {**os.environ, **LOCAL_CREDENTIALS, **(agent_env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping: set[str] = set()
        self.lock = threading.Lock()
        self.seq = 0

    def running(self, asg: str) -> list[LocalInstance]:
        return [i for i in read_instances(self.root)
                if i.asg == asg and i.instance_id in self.procs and i.instance_id not in self.stopping]

    def reconcile(self, spec: AsgSpec, desired: int) -> None:
        current = sorted(self.running(spec.name), key=lambda i: i.started_at)
        for _ in range(desired - len(current)):
            self.launch(spec)
        for inst in reversed(current[desired:] if desired < len(current) else []):
            self.terminate(inst.instance_id)
        self.reap()

    def launch(self, spec: AsgSpec) -> LocalInstance:
        with self.lock:
            self.seq += 1
            instance_id = f"i-local{os.getpid() % 10000:04d}{self.seq:05d}"
        folder = agents_dir(self.root) / instance_id
        folder.mkdir(parents=True, exist_ok=True)
        serving_port, health_port = free_port(), free_port()
        config: dict[str, Any] = {
            "role": spec.role, "team": spec.runtime.model_dump(), "work_root": str(folder / "ml"),
            "serving_port": serving_port, "health_port": health_port,
            "local": {"aws_endpoint_url": self.endpoint, "instance_id": instance_id},
        }
        if spec.role == "serving":
            # Watch the endpoints table every second, so local rollouts do not wait on the 5 s default.
            config.update(endpoint=spec.endpoint, variant=spec.variant, serving={"poll_interval_s": 1.0})
        else:
            # Several agents share this host's ports: each torchrun rendezvous takes a free one.
            config["training"] = {"rendezvous_port": 0}
        (folder / "agent.json").write_text(json.dumps(config, indent=2))
        with (folder / "agent.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "gpufleet.agent", "run", "--config",
                                     str(folder / "agent.json")], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env, cwd=folder)
        inst = LocalInstance(instance_id, spec.name, spec.runtime.team, spec.role, proc.pid, serving_port,
                             health_port, time.time(), spec.endpoint, spec.variant)
        write_instance(self.root, inst)
        self.procs[instance_id] = proc
        return inst

    def terminate(self, instance_id: str, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM now; SIGKILL after ``grace_s`` on a thread, so reconciling never blocks on a drain."""
        proc = self.procs.get(instance_id)
        if proc is None or instance_id in self.stopping:
            return
        self.stopping.add(instance_id)
        for inst in read_instances(self.root):
            if inst.instance_id == instance_id:
                inst.draining = True
                with contextlib.suppress(OSError):
                    write_instance(self.root, inst)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        threading.Thread(target=self._finish, args=(instance_id, proc, grace_s), daemon=True).start()

    def _finish(self, instance_id: str, proc: subprocess.Popen[bytes], grace_s: float) -> None:
        try:
            code = proc.wait(timeout=grace_s)
            log.info("instance %s stopped (exit %s after SIGTERM)", instance_id, code)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.warning("instance %s did not stop within %.0f s of SIGTERM: killed", instance_id, grace_s)
        self._forget(instance_id)

    def _forget(self, instance_id: str) -> None:
        with self.lock:
            self.procs.pop(instance_id, None)
            self.stopping.discard(instance_id)
        shutil.rmtree(agents_dir(self.root) / instance_id, ignore_errors=True)

    def reap(self) -> None:
        """Forget agents that exited on their own (a crash): the next reconcile replaces them, as an ASG would."""
        for instance_id, proc in list(self.procs.items()):
            if proc.poll() is not None and instance_id not in self.stopping:
                log = agents_dir(self.root) / instance_id / "agent.log"
                crashed = agents_dir(self.root) / "crashed"
                crashed.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):
                    shutil.copy(log, crashed / f"{instance_id}.log")
                self._forget(instance_id)

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        for instance_id in list(self.procs):
            self.terminate(instance_id, grace_s)
        deadline = time.monotonic() + grace_s + 5
        while self.procs and time.monotonic() < deadline:
            time.sleep(0.1)
