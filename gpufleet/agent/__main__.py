"""``gpufleet-agent``: the long-running host agent. ``run`` dispatches to the training or serving role."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from typing import Protocol

from gpufleet import __version__
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.schema.agent_config import DEFAULT_AGENT_CONFIG, AgentConfig, load_agent_config

ROLE_MODULES = {"training": "gpufleet.agent.training.daemon", "serving": "gpufleet.agent.serving.daemon"}


class RoleRunner(Protocol):
    def __call__(self, config: AgentConfig, stop: threading.Event) -> int: ...


def _runner(role: str) -> RoleRunner:
    module = importlib.import_module(ROLE_MODULES[role])
    return module.run  # type: ignore[no-any-return,unused-ignore]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpufleet-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gpufleet-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run the agent until SIGTERM"), ("check-config", "validate the config")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default=DEFAULT_AGENT_CONFIG)
    args = parser.parse_args(argv)
    try:
        config = load_agent_config(args.config)
        if args.command == "check-config":
            print(f"{args.config}: valid ({config.role} agent for team {config.team.team})")
            return 0
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        return _runner(config.role)(config, stop)
    except UserInputError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except RuntimeFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
