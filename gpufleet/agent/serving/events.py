"""Serving's agent events, through the agent's one logging setup (``gpufleet.agent.logs``): one JSON line each
on stderr, with the agent's context, which journald and the local-mode log files keep.
"""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger("gpufleet.agent.serving")


def emit(event: str, **fields: Any) -> None:
    _log.info(event, extra=fields)
