"""Start, find and stop the emulated AWS (a moto server) on a free local port.

The emulator outlives CLI calls: its endpoint and pid are recorded in ``.gpufleet/emulator.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from gpufleet.aws import LOCAL_CREDENTIALS
from gpufleet.errors import RuntimeFailure
from gpufleet.ports import free_port


@dataclass(frozen=True)
class Emulator:
    endpoint: str
    pid: int
    port: int
    log: str

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def boto_kwargs(self, region: str) -> dict[str, str]:
        """Keyword arguments for ``boto3.client`` that point it at the emulator."""
        return {"endpoint_url": self.endpoint, "region_name": region,
                "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


def record_path(root: Path) -> Path:
    return root / "emulator.json"


def find(root: Path) -> Emulator | None:
    """The running emulator recorded under ``root``, or None."""
    try:
        emu = Emulator(**json.loads(record_path(root).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
    return emu if emu.alive() else None


def start(root: Path, port: int | None = None, timeout_s: float = 30.0) -> Emulator:
    """Start a moto server in its own session (so it outlives this process) and record it."""
    existing = find(root)
    if existing:
        return existing
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = root / "emulator.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.local.moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **LOCAL_CREDENTIALS},
        )
    emu = Emulator(endpoint=f"http://127.0.0.1:{port}", pid=proc.pid, port=port, log=str(log))
    if not poll_until(emu.alive, proc, timeout_s):
        proc.kill()
        raise RuntimeFailure("local up", f"the emulator did not start on port {port}",
                             f"read {log}; is moto[server] installed (pip install 'gpufleet[dev]')?")
    record_path(root).write_text(json.dumps(asdict(emu)))
    return emu


def poll_until(ready: Callable[[], Any], proc: subprocess.Popen[bytes], timeout_s: float) -> Any:
    """``ready()``'s first truthy answer, polled every 0.1 s; a falsy one once ``proc`` exits or time runs out."""
    poll = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.1), retry_error_callback=lambda _: None,
                    retry=retry_if_result(lambda answer: not answer and proc.poll() is None))
    return poll(ready)


def stop(root: Path, timeout_s: float = 10.0) -> bool:
    """Stop the recorded emulator and forget it. True if one was running."""
    path = record_path(root)
    try:
        emu = Emulator(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return False
    path.unlink(missing_ok=True)
    stop_process(emu.pid, timeout_s)
    return True


def stop_process(pid: int, timeout_s: float) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s`` for it to end (reaping it if it is our child), then SIGKILL.

    False if it was not running.
    """
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(timeout_s)
    except psutil.NoSuchProcess:
        return False
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
            proc.wait(5)
    return True
