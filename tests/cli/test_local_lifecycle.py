"""`gpufleet local up` → `local down`: agents follow ASG capacity, and down leaves no process and no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gpufleet.local import emulator
from gpufleet.local.cloud import record_path
from gpufleet.local.instances import pid_alive, read_instances
from gpufleet.workspace import agents_dir, teams_dir
from tests.support.aws import client, create_team_resources


def _gpufleet(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpufleet.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300, check=False)


def _wait(predicate: object, timeout_s: float = 180.0) -> None:
    """A liveness bound, not a speed check: generous, since the suite runs modules side by side on 2 cores."""
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_local_up_then_down_leaves_no_processes_and_no_files(tmp_path: Path, repo_env: dict[str, str]) -> None:
    """The agents follow the training ASG's desired capacity (raised, then lowered: a graceful SIGTERM);
    `local down` then stops the agents, the local fleet and the emulator and removes .gpufleet/."""
    env = {k: v for k, v in repo_env.items() if k not in ("GPUFLEET_HOME", "GPUFLEET_TARGET")}
    up = _gpufleet(tmp_path, env, "local", "up", "--no-deploy")
    assert up.returncode == 0, up.stderr
    root = tmp_path / ".gpufleet"
    emu = emulator.find(root)
    assert emu is not None
    cloud_pid = json.loads(record_path(root).read_text())["pid"]
    rt = create_team_resources(emu, "life", "alpha")
    ec2, asg = client(emu, "ec2"), client(emu, "autoscaling")
    ec2.create_launch_template(LaunchTemplateName="life-lt", LaunchTemplateData={
        "ImageId": ec2.describe_images()["Images"][0]["ImageId"]})
    asg.create_auto_scaling_group(AutoScalingGroupName=rt.training.asg, MinSize=0, MaxSize=3, DesiredCapacity=2,
                                  LaunchTemplate={"LaunchTemplateName": "life-lt"}, AvailabilityZones=["us-east-1a"])
    teams_dir(root).mkdir(parents=True, exist_ok=True)
    (teams_dir(root) / "alpha.json").write_text(rt.to_json())
    _wait(lambda: len(read_instances(root)) == 2)
    first = read_instances(root)
    # Running, not still starting: an agent SIGTERMed before it sets its handler dies of the signal (exit
    # -15, harmless: it holds nothing yet), and what this test asks is the graceful stop of a running one.
    _wait(lambda: all("training agent started" in (agents_dir(root) / i.instance_id / "agent.log").read_text()
                      for i in first))
    asg.set_desired_capacity(AutoScalingGroupName=rt.training.asg, DesiredCapacity=1)
    _wait(lambda: len(read_instances(root)) == 1)
    stopped = [i.instance_id for i in first if i.instance_id not in {j.instance_id for j in read_instances(root)}]
    _wait(lambda: f"instance {stopped[0]} stopped (exit 0 after SIGTERM)" in (root / "cloud.log").read_text())
    status = json.loads(_gpufleet(tmp_path, env, "local", "status", "--json").stdout)
    assert status["running"] and status["teams"] == ["alpha"] and status["cloud_pid"] == cloud_pid
    pids = [emu.pid, cloud_pid, *(i.pid for i in first), *(i.pid for i in read_instances(root))]
    down = _gpufleet(tmp_path, env, "local", "down")
    assert down.returncode == 0, down.stderr
    assert not [p for p in pids if pid_alive(p)]
    assert os.listdir(tmp_path) == []
