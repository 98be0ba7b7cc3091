"""The npm cdktf-cli@0.21.0 synthesizes and deploys gpufleet's app too (offline: --skip-provider-lock)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from gpufleet.local import emulator
from gpufleet.terraform.cliconfig import write_cli_config
from tests.conftest import REPO_ROOT


def cdktf_binary() -> str:
    local = REPO_ROOT / ".tools" / "cdktf" / "node_modules" / ".bin" / "cdktf"
    found = str(local) if local.exists() else shutil.which("cdktf")
    assert found, "cdktf-cli is not installed: run scripts/setup (it installs cdktf-cli@0.21.0 into .tools/cdktf)"
    return found


@pytest.mark.e2e
def test_cdktf_cli_synths_deploys_and_destroys_the_platform_stack(tmp_path: Path, repo_env: dict[str, str]) -> None:
    shutil.copy(REPO_ROOT / "cdktf.json", tmp_path)
    shutil.copy(REPO_ROOT / "examples" / "gpufleet.yaml", tmp_path)
    workspace = tmp_path / ".gpufleet"
    emu = emulator.start(workspace)
    try:
        env = {**repo_env, "TF_CLI_CONFIG_FILE": str(write_cli_config(workspace)), "CHECKPOINT_DISABLE": "1",
               "CI": "1", "GPUFLEET_HOME": str(workspace)}

        def cdktf(*args: str) -> str:
            proc = subprocess.run([cdktf_binary(), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=600, check=False)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            return proc.stdout

        assert "platform, team-nlp, team-vision" in cdktf("synth")
        cdktf("deploy", "platform", "--skip-provider-lock", "--auto-approve")
        ec2 = boto3.client("ec2", **emu.boto_kwargs("us-east-1"))
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.40.0.0/16"]}])["Vpcs"]
        assert len(vpcs) == 1 and {"Key": "gpufleet:platform", "Value": "acme"} in vpcs[0]["Tags"]
        cdktf("destroy", "platform", "--skip-provider-lock", "--auto-approve", "--ignore-missing-stack-dependencies")
        assert not ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.40.0.0/16"]}])["Vpcs"]
    finally:
        emulator.stop(workspace)
