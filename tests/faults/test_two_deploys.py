"""Two ``gpufleet deploy`` at once on one state: the second starts while the first is applying the
platform stack.

What must hold: Terraform's state lock keeps them apart. A deploy waits for the lock up to its lock
timeout (60 s), saying at once who holds it (the holder's user@host, its operation, since when) and how
long it waits, then applies what is left (nothing, here); one that cannot get it in time fails with one
line naming the holder, since when, the lock ID and what to do (wait, or ``terraform force-unlock`` if the
holder was killed). Afterwards the state is intact: it names all 27 resources, nothing the emulator holds
is missing from it, and a re-plan is empty.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gpufleet.errors import RuntimeFailure
from gpufleet.local.emulator import Emulator
from gpufleet.terraform.runner import StackRunner
from tests.faults.deploys import Deployment, managed_resources
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.e2e


def test_two_deploys_at_once_the_lock_holds_the_second_waits_or_fails_naming_the_holder_and_the_state_is_intact(
        moto_server: Emulator, repo_env: dict[str, str], tmp_path: Path) -> None:
    with FaultProxy(moto_server.endpoint) as proxy:
        deployment = Deployment.create(moto_server, tmp_path, repo_env, endpoint=proxy.url)
        # The first deploy's subnets wait for their answers (held by the proxy) while it holds the state lock,
        # so the second reaches the lock while it is held, however long its synth takes on a loaded machine.
        held = proxy.stall(lambda call: call.action == "CreateSubnet")
        first = deployment.start(name="first")
        assert held.wait(300), "the first deploy did not reach its subnets: " + deployment.errors("first")[-2000:]

        impatient = StackRunner(deployment.stack_dir, deployment.home, lock_timeout_s=1)
        with pytest.raises(RuntimeFailure) as refused:
            impatient.apply()
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith("deploy platform: the state is locked by "), message
        assert "(apply since " in message and "lock " in message, message
        assert "another deploy is running on this state: wait for it to end and rerun" in message, message
        assert "`terraform force-unlock -force " in message and str(deployment.stack_dir) in message, message

        second = deployment.start(name="second")
        deadline = time.monotonic() + 300
        while "s for the state lock" not in deployment.errors("second"):
            assert second.poll() is None, "the second deploy ended without waiting: " + deployment.errors("second")
            assert time.monotonic() < deadline, "the second deploy never reached the lock"
            time.sleep(0.5)
        proxy.heal()
        _assert_the_lock_held(deployment, first, second)


def _assert_the_lock_held(deployment: Deployment, first: subprocess.Popen[str], second: subprocess.Popen[str]) -> None:
    assert first.wait(600) == 0, deployment.errors("first")[-3000:]
    waited = second.wait(600)
    said = deployment.errors("second")
    (waiting,) = [ln for ln in said.splitlines() if ln.startswith("platform: the state is locked by ")]
    assert f"@{socket.gethostname()} (apply since " in waiting, waiting   # the first deploy, on this host
    assert waiting.endswith("); waiting up to 60 s for the state lock"), waiting
    if waited != 0:   # it gave up after the lock timeout: one clear line, as above
        (line,) = [ln for ln in said.splitlines() if ln.startswith("error:")]
        assert "the state is locked by " in line and "force-unlock" in line, said[-2000:]
    state = json.loads(deployment.state_file.read_text())
    assert state["lineage"] and managed_resources(deployment.state_file) == 27, "the state is intact"
    assert deployment.orphans() == [], "no resource was created twice or lost from the state"
    assert deployment.replan_is_empty()
