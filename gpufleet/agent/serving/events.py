"""One JSON line per agent event on stderr (journald and the local-mode log files keep them)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def emit(event: str, **fields: Any) -> None:
    line = json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str)
    print(line, file=sys.stderr, flush=True)
