"""What the Terraform fault tests share: a one-team config (its platform stack has 27 resources, about
35 s to apply), the real CLI as a process, and what must hold after a fault: the states name every
resource the platform has in the emulator (nothing orphaned) and a re-plan is empty. Each test's platform
has its own name and stays in the session's emulator (a destroy would add a minute to each)."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from gpufleet.local.emulator import Emulator
from gpufleet.terraform.runner import StackRunner
from tests.support.aws import client


@dataclass
class Deployment:
    """A working directory for ``gpufleet deploy platform`` against the session's emulator."""

    emu: Emulator
    cwd: Path
    env: dict[str, str]
    platform: str

    @classmethod
    def create(cls, emu: Emulator, cwd: Path, repo_env: dict[str, str], endpoint: str | None = None) -> Deployment:
        """A working directory whose CLI finds the session's moto, at ``endpoint`` when given (a fault proxy
        in front of it)."""
        platform = f"flt{secrets.token_hex(2)}"
        (cwd / "gpufleet.yaml").write_text(yaml.safe_dump({
            "platform": {"name": platform, "region": "us-east-1", "az_count": 2},
            "teams": [{"name": "alpha", "training": {"instance_types": ["g5.xlarge"], "max_instances": 1}}]}))
        home = cwd / ".gpufleet"
        home.mkdir()
        (home / "emulator.json").write_text(json.dumps({**asdict(emu), "endpoint": endpoint or emu.endpoint}))
        return cls(emu, cwd, {**repo_env, "GPUFLEET_HOME": str(home), "GPUFLEET_TARGET": "local"}, platform)

    @property
    def home(self) -> Path:
        return self.cwd / ".gpufleet"

    @property
    def stack_dir(self) -> Path:
        return self.cwd / "cdktf.out" / "stacks" / "platform"

    @property
    def state_file(self) -> Path:
        return self.home / "state" / "platform.tfstate"

    def stack_dir_of(self, stack: str) -> Path:
        return self.cwd / "cdktf.out" / "stacks" / stack

    def start(self, action: str = "deploy", name: str = "deploy", stacks: tuple[str, ...] = ("platform",)
              ) -> subprocess.Popen[str]:
        """``gpufleet ACTION STACKS`` in its own process group, as a terminal runs a command (Ctrl-C
        signals the group); output in ``<name>.out``/``<name>.err``.

        SIGINT is reset to its default first, as a terminal's shell does for a foreground command: a suite
        started in the background by a non-interactive shell inherits SIGINT ignored, and Python then
        installs no KeyboardInterrupt handler, so Ctrl-C would never reach gpufleet."""
        return subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", action, *stacks, "--config", "gpufleet.yaml"],
            cwd=self.cwd, env=self.env, text=True, start_new_session=True, preexec_fn=_default_sigint,
            stdout=(self.cwd / f"{name}.out").open("w"), stderr=(self.cwd / f"{name}.err").open("w"))

    def run(self, action: str = "deploy", name: str = "deploy", stacks: tuple[str, ...] = ("platform",)
            ) -> tuple[int, str]:
        proc = self.start(action, name, stacks)
        return proc.wait(600), self.errors(name)

    def errors(self, name: str) -> str:
        return (self.cwd / f"{name}.err").read_text()

    def wait_until_applying(self, timeout_s: float = 180) -> None:
        """Until Terraform has created the platform's VPC: the apply is under way, most of it still ahead."""
        ec2 = client(self.emu, "ec2")
        deadline = time.monotonic() + timeout_s
        while not ec2.describe_vpcs(Filters=[self.tag_filter("Name")])["Vpcs"]:
            assert time.monotonic() < deadline, "the deploy did not start creating the platform"
            time.sleep(0.2)

    def tag_filter(self, key: str = "Key") -> dict[str, Any]:
        return {key: "tag:gpufleet:platform" if key == "Name" else "gpufleet:platform", "Values": [self.platform]}

    def replan_is_empty(self, stack: str = "platform") -> bool:
        return not StackRunner(self.stack_dir_of(stack), self.home).plan().has_changes

    def orphans(self) -> list[str]:
        """The platform's tagged resources in the emulator that its state does not name (a KMS key pending
        deletion is a replaced one: AWS keeps it 7-30 days)."""
        states = [json.loads(path.read_text()) for path in (self.home / "state").glob("*.tfstate")]
        known = {value for state in states for resource in state["resources"] if resource["mode"] == "managed"
                 for instance in resource["instances"] for key, value in instance["attributes"].items()
                 if key in ("arn", "id") and isinstance(value, str)}
        tagged = client(self.emu, "resourcegroupstaggingapi").get_resources(
            TagFilters=[self.tag_filter()])["ResourceTagMappingList"]
        kms = client(self.emu, "kms")

        def replaced_key(arn: str) -> bool:
            return ":kms:" in arn and kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"

        return [arn for arn in (t["ResourceARN"] for t in tagged)
                if arn not in known and arn.rsplit("/", 1)[-1] not in known and not replaced_key(arn)]


def managed_resources(state_file: Path) -> int:
    return sum(len(r["instances"]) for r in json.loads(state_file.read_text())["resources"] if r["mode"] == "managed")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
