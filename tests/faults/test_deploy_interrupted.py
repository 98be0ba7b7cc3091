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
import sys
import threading
import time
from pathlib import Path

import pytest

from gpufleet.deploy import Interruption
from gpufleet.errors import Interrupted
from gpufleet.local.emulator import Emulator
from gpufleet.terraform.runner import StackRunner
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


# A stand-in ``terraform`` (via $TERRAFORM_BINARY) that applies until SIGINT, then fails as Terraform's
# graceful stop does.
STAND_IN = """\
import json, os, signal, sys, time
def stop(*_):
    open(sys.argv[0] + ".interrupted", "w").write("SIGINT")
    print(json.dumps({"type": "diagnostic", "diagnostic": {"severity": "error",
          "summary": "creating S3 Bucket: context canceled", "detail": ""}}), flush=True)
    sys.exit(1)
signal.signal(signal.SIGINT, stop)
print(json.dumps({"type": "apply_start", "hook": {}}), flush=True)
open(sys.argv[0] + ".started", "w").write(str(os.getpid()))
time.sleep(120)
"""


def test_a_second_ctrl_c_stops_terraform_at_once_and_says_what_may_be_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "terraform"
    script.write_text(f"#!{sys.executable}\n{STAND_IN}")
    script.chmod(0o755)
    monkeypatch.setenv("TERRAFORM_BINARY", str(script))
    (tmp_path / "stacks" / "platform").mkdir(parents=True)
    interruption = Interruption()
    runner = StackRunner(tmp_path / "stacks" / "platform", tmp_path / "workspace")
    interruption.track(runner)
    failures: list[BaseException] = []

    def apply() -> None:
        try:
            runner.apply()
        except Interrupted as exc:
            failures.append(exc)

    worker = threading.Thread(target=apply, daemon=True)
    worker.start()
    started = Path(f"{script}.started")
    while not started.exists() and worker.is_alive():
        time.sleep(0.05)

    assert interruption.request() is True, "the first Ctrl-C only asks to stop after the running stacks"
    assert interruption.running() == ["platform"]
    worker.join(1)
    assert worker.is_alive() and not Path(f"{script}.interrupted").exists(), "Terraform goes on applying"
    assert interruption.request() is False, "the second stops Terraform"
    worker.join(60)
    assert Path(f"{script}.interrupted").exists() and not worker.is_alive()
    (failure,) = failures
    message = str(failure)
    assert failure.exit_code == 130 and "\n" not in message
    assert message.startswith("deploy platform: Terraform stopped at once"), message
    assert "already exists" in message and "terraform import" in message, message
