"""Audit a test's call record against the stacks synthesized (for real AWS) for the test's team.

The agent tests create their team's resources with boto3, named as the team stack names them; the
stacks synthesized here for that platform and team hold the roles, boundary and network AWS would get.
"""

from __future__ import annotations

from pathlib import Path

from gpufleet.app import synth_app
from gpufleet.audit.evaluate import AuditReport, audit
from gpufleet.audit.stacks import load_stacks
from gpufleet.callrecord import RECORD_ENV, read_calls
from gpufleet.config import parse_config
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.target import aws_target


def recording(env: dict[str, str], calls: Path) -> dict[str, str]:
    """``env`` with the call record on (the agents name their own role and team)."""
    return {**env, RECORD_ENV: str(calls)}


def audit_team_calls(calls: Path, runtime: TeamRuntime, work: Path,
                     endpoints: tuple[str, ...] = ()) -> AuditReport:
    cfg = parse_config({"platform": {"name": runtime.platform, "region": runtime.region},
                        "teams": [{"name": runtime.team, "training": {"instance_types": ["g5.xlarge"]},
                                   "endpoints": [{"name": e, "instance_type": "g5.xlarge"} for e in endpoints]}]},
                       "audit config")
    work.mkdir(parents=True, exist_ok=True)
    synth_app(cfg, aws_target(work / "state"), work / "cdktf.out")
    return audit(load_stacks([work / "cdktf.out"]), read_calls(calls))


def problems(report: AuditReport) -> list[str]:
    """One line per denied or unrouted call, for an assertion message."""
    lines = [f"{r.role}: {d.operation} needs {d.request.action} on {d.request.resource} ({d.reason})"
             for r in report.roles for d in r.denied]
    lines += [f"{r.role}: {s} unrouted ({n} calls)" for r in report.roles for s, n in r.unrouted.items()]
    return lines + [f"no role for {who} ({n} calls)" for who, n in report.unattributed.items()]
