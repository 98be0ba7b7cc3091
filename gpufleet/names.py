"""AWS names: ``<platform>-<team>-<thing>``, DNS-safe and within each service's length limit.

A name that would be too long keeps its readable start and ends in a short hash of the whole,
so it stays unique and stable across synths.
"""

from __future__ import annotations

import hashlib

# Length limits of the AWS names gpufleet creates.
LIMITS = {
    "s3": 63,
    "alb": 32,
    "target_group": 32,
    "iam_role": 64,
    "sqs": 80,
    "dynamodb": 255,
    "asg": 255,
    "launch_template": 128,
    "default": 63,
}


def fit(name: str, limit: int) -> str:
    """``name`` if it fits ``limit``, else its start plus a 6-character hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


def stack_name(team: str | None) -> str:
    return "platform" if team is None else f"team-{team}"


def resource_name(platform: str, team: str | None, thing: str, kind: str = "default") -> str:
    parts = [platform] + ([team] if team else []) + [thing]
    return fit("-".join(parts), LIMITS.get(kind, LIMITS["default"]))
