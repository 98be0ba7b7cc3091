"""`packer build ami/gpu-node.pkr.hcl` with Packer 1.6.6 against the moto server, its SSH pointed at
a booted nspawn target (moto starts no real instance), so the ansible provisioner runs gpu-node.yml
on a real host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from gpufleet.aws import LOCAL_CREDENTIALS
from gpufleet.local.emulator import Emulator
from tests.nodes.conftest import nvidia_repo_vars, require
from tests.nodes.nspawn import REPO_ROOT, Target

REGION = "eu-central-1"
# moto registers images as root-device-type "standard", so the base filter names one of its bundled
# EBS images; the target's real OS is the Debian rootfs anyway.
BASE_NAME = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"
DRIVER = "535.261.03"


@dataclass(frozen=True)
class Bake:
    rc: int
    output: str
    base_ami: str
    images: list[dict[str, Any]]    # moto's gpufleet-gpu-* images after the build
    seconds: float


def bake(emu: Emulator, target: Target, repo_url: str, wheel: Path, workdir: Path) -> Bake:
    require("packer")
    ec2 = boto3.client("ec2", **emu.boto_kwargs(REGION))
    bundled = ec2.describe_images(Filters=[{"Name": "name", "Values": [BASE_NAME]}])["Images"][0]
    # No team runtime: an image holds no team's config; user-data writes it at boot.
    extra = workdir / "bake-vars.json"
    # The nspawn target shares this machine's network namespace: loading the IMDS guard's nftables rule there
    # would change the build machine's own firewall, so the test bake leaves the guard out.
    # Its root is an overlayfs, which podman's overlay storage cannot stack on.
    extra.write_text(json.dumps({**nvidia_repo_vars(repo_url), "gpufleet_agent_extras": ["agent"],
                                 "gpufleet_agent_imds_guard": False, "container_runtime_storage_driver": "vfs"}))
    variables = {
        "region": REGION, "base_ami_name": BASE_NAME, "base_ami_owners": json.dumps([bundled["OwnerId"]]),
        "agent_wheel": str(wheel), "driver_source": "nvidia", "driver_version": DRIVER,
        "instance_type": "p4d.24xlarge", "ec2_endpoint": emu.endpoint, "ssh_host": "127.0.0.1",
        "ssh_port": str(target.port), "ssh_username": "root", "ssh_private_key_file": str(target.key),
        "ansible_extra_arguments": json.dumps(["-e", f"@{extra}"]),
    }
    cmd = ["packer", "build", "-color=false", *[a for k, v in variables.items() for a in ("-var", f"{k}={v}")],
           "ami/gpu-node.pkr.hcl"]
    env = {**os.environ, **LOCAL_CREDENTIALS, "CHECKPOINT_DISABLE": "1",
           "PACKER_CACHE_DIR": str(workdir / "packer-cache")}
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["gpufleet-gpu-*"]}])["Images"]
    return Bake(proc.returncode, proc.stdout[-6000:] + proc.stderr[-2000:], bundled["ImageId"], images,
                time.monotonic() - started)
