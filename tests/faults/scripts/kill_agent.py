"""A poison job: it kills the agent that runs it (as a job that takes its host down would), every time."""

import os
import signal
from pathlib import Path


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


pid = os.getpid()
while pid > 1:
    pid = parent_of(pid)
    if b"gpufleet.agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
        print(f"killing agent {pid}", flush=True)
        os.kill(pid, signal.SIGKILL)
        break
