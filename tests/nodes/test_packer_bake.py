"""A full `packer build` of ami/gpu-node.pkr.hcl with Packer 1.6.6: the amazon-ebs builder talks to
the moto server, and its SSH (so the ansible provisioner running gpu-node.yml) goes to a booted
nspawn target instead of the EC2 instance moto pretends to start.

Stand-ins: moto's EC2 (no real instance or snapshot), the nspawn host, and the signed stand-in for
NVIDIA's repositories (tests/nodes/aptrepo.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from gpufleet.local.emulator import LOCAL_CREDENTIALS, Emulator
from tests.nodes.conftest import BootFn, nvidia_repo_vars, require

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-central-1"
BASE_NAME = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"
pytestmark = pytest.mark.slow


def test_bake_against_moto_produces_an_available_tagged_ami(boot_target: BootFn, nvidia_repo: str, agent_wheel: Path,
                                                           moto_server: Emulator, tmp_path: Path) -> None:
    require("packer")
    ec2 = boto3.client("ec2", **moto_server.boto_kwargs(REGION))
    # moto registers images as root-device-type "standard", so the base filter names one of its bundled
    # EBS images; the target's real OS is the Debian rootfs anyway.
    bundled = ec2.describe_images(Filters=[{"Name": "name", "Values": [BASE_NAME]}])["Images"][0]
    base, owner = bundled["ImageId"], bundled["OwnerId"]
    target = boot_target()
    # No team runtime: an image holds no team's config; user-data writes it at boot.
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({**nvidia_repo_vars(nvidia_repo), "gpufleet_agent_extras": ["agent"]}))
    var_args = {"region": REGION, "base_ami_name": BASE_NAME, "base_ami_owners": json.dumps([owner]),
                "agent_wheel": str(agent_wheel),
                "driver_source": "nvidia", "driver_version": "535.261.03", "instance_type": "p4d.24xlarge",
                "ec2_endpoint": moto_server.endpoint, "ssh_host": "127.0.0.1", "ssh_port": str(target.port),
                "ssh_username": "root", "ssh_private_key_file": str(target.key),
                "ansible_extra_arguments": json.dumps(["-e", f"@{extra}"])}
    cmd = ["packer", "build", "-color=false", *[a for k, v in var_args.items() for a in ("-var", f"{k}={v}")],
           "ami/gpu-node.pkr.hcl"]
    env = {**os.environ, **LOCAL_CREDENTIALS, "CHECKPOINT_DISABLE": "1", "PACKER_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["gpufleet-gpu-*"]}])["Images"]
    assert len(images) == 1 and images[0]["State"] == "available"
    tags = {t["Key"]: t["Value"] for t in images[0]["Tags"]}
    assert tags["gpufleet:driver"] == "535.261.03" and tags["gpufleet:base-ami"] == base
    assert images[0]["Name"].startswith("gpufleet-gpu-nvidia-535.261.03-")
    # The provisioner ran the real playbook on the target: the agent waits for its config.
    assert target.ssh("systemctl is-enabled gpufleet-agent.path gpufleet-agent").stdout.split() == ["enabled"] * 2
    assert target.ssh("systemctl is-active gpufleet-agent", check=False).stdout.strip() == "inactive"
    assert target.ssh("test -e /etc/gpufleet/agent.yaml", check=False).returncode == 1
