"""Run the job's process (torchrun, or the script itself for a one-process job) as a child that can never
outlive the agent.

- ``PR_SET_PDEATHSIG``: if the agent dies (even ``kill -9``), the kernel sends the child SIGTERM (torchrun
  then stops its workers).
- Stopping sends SIGTERM, waits the grace period, then SIGKILLs the whole process tree, workers included
  (torchrun starts them in their own sessions, so a process-group kill would miss them).
- A one-process job skips torchrun's launcher (about 1.7 s of start-up) but gets the environment
  torchrun gives its worker (``direct_worker_env``), so scripts that read ``RANK`` or call
  ``init_process_group()`` run unchanged.
- When the agent is its process's main thread it is also a child subreaper, so workers whose launcher
  died are re-parented to the agent and killed after the job (``kill_orphans``).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from gpufleet.ports import free_port

log = logging.getLogger("gpufleet.agent.process")
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36
_libc = ctypes.CDLL(None, use_errno=True)
# torchrun's own log lines (glog style) and the line that opens its failure report.
_TORCH_LOG = re.compile(r"^[DIWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S*torch/distributed/")
_CHILD_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\)")
_LAUNCHER_REPORT_LINES = 200   # room in the tail for torchrun's report, which is cut off again


def script_failure(lines: list[str], launcher_code: int, keep: int) -> tuple[int, list[str]]:
    """The script's own exit code and last ``keep`` lines, without torchrun's failure report (a launcher
    traceback that would otherwise be all a failed job's reason shows)."""
    code, cut = launcher_code, len(lines)
    for i in range(len(lines) - 1, -1, -1):
        match = _CHILD_FAILED.search(lines[i]) if _TORCH_LOG.match(lines[i]) else None
        if match:
            code, cut = int(match.group(1)), i
            break
    own = [line for line in lines[:cut] if not _TORCH_LOG.match(line)]
    return code, own[-keep:]


def direct_worker_env(run_id: str) -> dict[str, str]:
    """What torchrun (``torch.distributed.run --standalone --nproc-per-node=1``) sets for its one worker.

    ``TORCHELASTIC_USE_AGENT_STORE=False``: with no launcher there is no agent store, so an
    ``init_process_group()`` in the script starts its own TCP store on ``MASTER_PORT``, as a plain
    ``python train.py`` with these variables would."""
    return {
        "RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0", "ROLE_RANK": "0", "ROLE_NAME": "default",
        "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "GROUP_WORLD_SIZE": "1", "ROLE_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
        "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "0", "TORCHELASTIC_RUN_ID": run_id,
        "TORCHELASTIC_USE_AGENT_STORE": "False",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": os.environ.get("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"),
    }


def _die_with_parent() -> None:   # runs in the child between fork and exec: no Python objects beyond this
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def become_subreaper() -> bool:
    return bool(_libc.prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (psutil reads /proc once per call: about 2 ms for 300 processes)."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_orphans(keep: set[int] | None = None) -> int:
    """SIGKILL and reap the agent's leftover children (re-parented workers); returns how many."""
    leftovers = [p.pid for p in psutil.Process().children() if p.pid not in (keep or set())]
    _kill(leftovers, signal.SIGKILL)
    for pid in leftovers:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return len(leftovers)


class JobProcess:
    """The job's process (torchrun or the script), its output teed to a log file and a line callback, and
    its last lines."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path,
                 on_line: Callable[[str], None], tail_lines: int = 20, run_as: dict[str, Any] | None = None) -> None:
        self.argv, self.env, self.cwd, self.log_path, self.on_line = argv, env, cwd, log_path, on_line
        self.run_as = run_as or {}   # Popen user/group/extra_groups: the job user (gpufleet.agent.training.isolation)
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines + _LAUNCHER_REPORT_LINES)
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent, **self.run_as)
        self._reader = threading.Thread(target=self._read, name="job-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        with self.log_path.open("a", encoding="utf-8") as out:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                out.write(line + "\n")
                out.flush()
                self.tail.append(line)
                try:
                    self.on_line(line)
                except Exception:   # a metric parse must never stop the tee
                    log.exception("output callback failed")

    def poll(self) -> int | None:
        assert self.proc
        return self.proc.poll()

    def finish_output(self, timeout_s: float = 10.0) -> None:
        if self._reader:
            self._reader.join(timeout_s)

    def stop(self, grace_s: float) -> int:
        """SIGTERM the child, wait ``grace_s``, then SIGKILL the whole tree. Returns the exit code."""
        assert self.proc
        if self.proc.poll() is None:
            _kill([self.proc.pid], signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None or tree:
            log.warning("job did not stop in its grace period: killing it", extra={"pids": [self.proc.pid, *tree]})
            _kill([self.proc.pid, *tree], signal.SIGKILL)
        code = self.proc.wait()
        self.finish_output()
        return code
