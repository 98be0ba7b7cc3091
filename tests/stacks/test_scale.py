"""Scale: a 50-team config synthesizes, and a sample of its stacks passes `terraform validate`.

Validating all 51 stacks takes about 51 x (init + validate) ~ 3 min here, over this area's budget, so the
test validates the platform and the first, a middle and the last team; every stack has the same shape.
scripts/bench-synth prints the 50-team synth figures.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gpufleet.app import synth_app
from gpufleet.config import parse_config
from gpufleet.target import aws_target
from gpufleet.terraform.runner import StackRunner

TEAMS = 50


def fifty_teams() -> dict[str, object]:
    teams = [{"name": f"team{i:02d}", "training": {"instance_types": ["g5.xlarge", "g6.xlarge"], "max_instances": 2},
              "endpoints": [{"name": "infer", "instance_type": "g5.xlarge"}] if i % 5 == 0 else []}
             for i in range(TEAMS)]
    return {"platform": {"name": "scale", "vpc_cidr": "10.50.0.0/16"}, "teams": teams}


def test_fifty_teams_synthesize_and_sampled_stacks_validate(tmp_path: Path) -> None:
    cfg = parse_config(fifty_teams())
    result = synth_app(cfg, aws_target(tmp_path / "state"), tmp_path / "out")
    assert len(result.stacks) == TEAMS + 1
    assert all(count > 50 for name, count in result.stacks.items() if name != "platform")
    for stack in ("platform", "team-team00", "team-team25", "team-team49"):
        stack_dir = tmp_path / "out" / "stacks" / stack
        runner = StackRunner(stack_dir, tmp_path / "ws")
        runner.init()
        proc = subprocess.run([runner.binary, "validate", "-no-color"], cwd=stack_dir, env=runner.env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{stack}: {proc.stdout}{proc.stderr}"
