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
GLOBAL_KINDS = ("s3", "iam_role", "dashboard")  # names AWS keeps account-wide, not per region


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


def global_name(name: str, rebuilt_region: str | None) -> str:
    """An account-wide name (S3, IAM, dashboards): a DR rebuild suffixes its region, so that it never
    collides with the lost region's names, which still exist."""
    return f"{name}-{rebuilt_region}" if rebuilt_region else name


def team_resource_name(platform: str, team: str, thing: str, kind: str = "default",
                       rebuilt_region: str | None = None) -> str:
    """A team resource's AWS name, as the team stack names it: an account-wide kind's (``GLOBAL_KINDS``)
    carries a DR rebuild's region."""
    name = resource_name(platform, team, thing, kind)
    return global_name(name, rebuilt_region) if kind in GLOBAL_KINDS else name
