"""The shared platform stack: network and keys every team stack builds on."""

from __future__ import annotations

import ipaddress

from constructs import Construct

from gpufleet.config import PlatformConfig
from gpufleet.names import resource_name, stack_name
from gpufleet.providers import KmsKey, Subnet, Vpc
from gpufleet.stacks.base import GpufleetStack
from gpufleet.target import Target


class PlatformStack(GpufleetStack):
    def __init__(self, scope: Construct, cfg: PlatformConfig, target: Target, region: str | None = None) -> None:
        super().__init__(scope, stack_name(None), cfg, target, region=region)
        p = cfg.platform
        self.key = KmsKey(self, "key", description=f"{p.name} platform key", enable_key_rotation=True,
                          deletion_window_in_days=7)
        self.vpc = Vpc(self, "vpc", cidr_block=p.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                       tags={"Name": resource_name(p.name, None, "vpc")})
        subnets = list(ipaddress.IPv4Network(p.vpc_cidr).subnets(new_prefix=24))
        self.private_subnets = [
            Subnet(self, f"private-{i}", vpc_id=self.vpc.id, cidr_block=str(subnets[i]),
                   availability_zone=f"{self.region}{'abcdef'[i]}",
                   tags={"Name": resource_name(p.name, None, f"private-{i}")})
            for i in range(p.az_count)
        ]
