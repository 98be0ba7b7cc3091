"""Structured JSON logs for the agent: one JSON object per line on stderr, with the agent's context.

``log.info("job claimed", extra={"job_id": ...})`` writes ``{"event": "job claimed", "job_id": ...}``; both
roles log this way (serving through ``serving.events.emit``). journald and
CloudWatch agents ingest the lines as they are.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

# Attributes every LogRecord has; anything else came from ``extra=`` and goes into the JSON.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_HANDLER_NAME = "gpufleet-json"


class JsonFormatter(logging.Formatter):
    def __init__(self, context: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.context = dict(context or {})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **self.context,
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(line, default=str)


def configure_logging(context: dict[str, Any] | None = None, level: int = logging.INFO,
                      stream: TextIO | None = None) -> None:
    """Install (or refresh) the JSON handler on the ``gpufleet`` logger; idempotent."""
    logger = logging.getLogger("gpufleet")
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter(context))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
