"""``gpufleet-agent run`` as a real process, the way the agent fixtures of every suite start one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def start_agent_process(config: dict[str, Any], config_path: Path, log: Path,
                        env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Write ``config`` to ``config_path`` and start an agent on it, its stdout and stderr in ``log``."""
    config_path.write_text(json.dumps(config))
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "gpufleet.agent", "run", "--config", str(config_path)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
