"""``gpufleet deploy`` interrupted midway, as Ctrl-C does: SIGINT to its process group while Terraform is
creating the platform stack (its VPC exists, most of its 27 resources do not), before the team stack.

Terraform's own graceful stop cancels the AWS calls in flight, so a resource being created can be made
but never recorded, and the next deploy fails on it (seen here: ``BucketAlreadyExists`` for the log
bucket). So gpufleet runs Terraform in its own session and takes Ctrl-C itself: the first lets the stack
being applied finish and starts no other; a second stops Terraform at once.

What must hold: the interrupted deploy ends (exit 130) saying what finished, what did not start and how to
finish; its lock is released; the emulator holds nothing the states do not name; ``gpufleet deploy``
again converges and every stack re-plans empty.

A ``kill -9`` leaves no stale lock here: the local backend's lock is an ``fcntl`` lock the kernel releases
with the process (with the S3 backend a killed run leaves its lock file, and the next deploy fails naming
it and ``terraform force-unlock``: see tests/faults/test_two_deploys.py for that message).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from gpufleet.local.emulator import Emulator
from tests.faults.deploys import Deployment, managed_resources

pytestmark = pytest.mark.e2e
ALL = ("platform", "team-alpha")


def test_a_deploy_interrupted_midway_finishes_its_stack_and_the_next_deploy_converges_to_an_empty_replan(
        moto_server: Emulator, repo_env: dict[str, str], tmp_path: Path) -> None:
    deployment = Deployment.create(moto_server, tmp_path, repo_env)   # left in the session's emulator
    first = deployment.start(name="interrupted", stacks=ALL)
    deployment.wait_until_applying()
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(300) == 130, deployment.errors("interrupted")[-3000:]
    said = deployment.errors("interrupted")
    assert "deploy: stopping after platform" in said, said[-2000:]
    assert "interrupted after platform; not started: team-alpha" in said, said[-2000:]
    assert "rerun `gpufleet deploy` to finish" in said
    assert managed_resources(deployment.state_file) == 27, "the stack being applied finished"
    assert not (deployment.home / "state" / "team-alpha.tfstate").exists(), "no other stack started"
    assert not list((deployment.home / "state").glob(".*.lock.info")), "the lock is released"
    assert deployment.orphans() == [], "every resource the interrupted deploy created is in the state"

    code, errors = deployment.run(name="again", stacks=ALL)
    assert code == 0, errors[-3000:]
    assert all(deployment.replan_is_empty(stack) for stack in ALL), "the deploy after the interruption converged"
    assert (deployment.home / "teams" / "alpha.json").exists()
    assert deployment.orphans() == []
