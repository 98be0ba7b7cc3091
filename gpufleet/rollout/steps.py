"""Traffic steps per strategy: the candidate variant's listener weight at each step (the last is 100)."""

from __future__ import annotations

from typing import Literal, get_args

from gpufleet.errors import UserInputError

Strategy = Literal["all-at-once", "canary", "linear"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


def traffic_steps(strategy: str, canary_percent: int = 10, linear_step: int = 25) -> list[int]:
    """``canary`` sends ``canary_percent`` first, then everything; ``linear`` moves ``linear_step`` at a time."""
    if strategy == "all-at-once":
        return [100]
    if strategy == "canary":
        if not 1 <= canary_percent <= 99:
            raise UserInputError([f"--canary-percent: {canary_percent} is outside 1-99 (pick e.g. 10)"])
        return [canary_percent, 100]
    if strategy == "linear":
        if not 1 <= linear_step <= 50:
            raise UserInputError([f"--linear-step: {linear_step} is outside 1-50 (pick e.g. 25)"])
        return [*range(linear_step, 100, linear_step), 100]
    raise UserInputError([f"--strategy: {strategy!r} is not a strategy (use one of {', '.join(STRATEGIES)})"])
