"""Network: a VPC across several AZs with private subnets, optional public subnets and NAT, an S3
gateway endpoint, a locked-down default security group, and flow logs to S3."""

from __future__ import annotations

import ipaddress

from cdktf import Fn
from constructs import Construct

from gpufleet.constructs.suppress import skip_checks
from gpufleet.providers import (
    DataAwsAvailabilityZones,
    DefaultSecurityGroup,
    Eip,
    FlowLog,
    InternetGateway,
    NatGateway,
    Route,
    RouteTable,
    RouteTableAssociation,
    Subnet,
    Vpc,
    VpcEndpoint,
)


class Network(Construct):
    """Subnets are /24s: private ``i`` at offset ``i``, public ``i`` at offset ``az_count + i``.

    ``public_subnets`` adds an internet gateway and public subnets (for internet-facing load balancers);
    ``nat`` adds one NAT gateway so private hosts reach the internet (needs ``public_subnets``).
    """

    def __init__(self, scope: Construct, net_id: str, *, name: str, cidr: str, az_count: int, region: str,
                 flow_log_bucket_arn: str, public_subnets: bool = False, nat: bool = False) -> None:
        super().__init__(scope, net_id)
        if nat and not public_subnets:
            raise ValueError("a NAT gateway needs public subnets")
        self.vpc = Vpc(self, "vpc", cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True,
                       tags={"Name": name})
        self.vpc_id, self.cidr = self.vpc.id, cidr
        # No rules: nothing may use the default group (CIS 5.4).
        DefaultSecurityGroup(self, "default-sg", vpc_id=self.vpc.id, tags={"Name": f"{name}-default-unused"})
        FlowLog(self, "flow-log", vpc_id=self.vpc.id, traffic_type="ALL", log_destination_type="s3",
                log_destination=flow_log_bucket_arn, max_aggregation_interval=600)
        azs = DataAwsAvailabilityZones(self, "azs", state="available")
        skip_checks(azs, {"CKV_AWS_394": "subnets use the first az_count zones by index; AWS appends new zones "
                                         "after existing ones, so the chosen zones do not move"})
        blocks = list(ipaddress.IPv4Network(cidr).subnets(new_prefix=24))
        self.private_route_table = RouteTable(self, "private-rt", vpc_id=self.vpc.id,
                                              tags={"Name": f"{name}-private"})
        self.private_subnets = [self._subnet(f"private-{i}", str(blocks[i]), Fn.element(azs.names, i),
                                             self.private_route_table, name) for i in range(az_count)]
        self.public_subnets: list[Subnet] = []
        if public_subnets:
            self._public(name, blocks[az_count:2 * az_count], azs, nat)
        VpcEndpoint(self, "s3-endpoint", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{region}.s3",
                    vpc_endpoint_type="Gateway", route_table_ids=[self.private_route_table.id],
                    tags={"Name": f"{name}-s3"})

    def _subnet(self, sub_id: str, cidr: str, az: str, table: RouteTable, name: str, public: bool = False) -> Subnet:
        subnet = Subnet(self, sub_id, vpc_id=self.vpc.id, cidr_block=cidr, availability_zone=az,
                        map_public_ip_on_launch=False, tags={"Name": f"{name}-{sub_id}",
                                                             "gpufleet:tier": "public" if public else "private"})
        RouteTableAssociation(self, f"{sub_id}-rt", subnet_id=subnet.id, route_table_id=table.id)
        return subnet

    def _public(self, name: str, blocks: list[ipaddress.IPv4Network], azs: DataAwsAvailabilityZones,
                nat: bool) -> None:
        igw = InternetGateway(self, "igw", vpc_id=self.vpc.id, tags={"Name": name})
        table = RouteTable(self, "public-rt", vpc_id=self.vpc.id, tags={"Name": f"{name}-public"})
        Route(self, "public-default", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
              gateway_id=igw.id)
        self.public_subnets = [self._subnet(f"public-{i}", str(b), Fn.element(azs.names, i), table, name, True)
                               for i, b in enumerate(blocks)]
        if nat:
            eip = Eip(self, "nat-eip", domain="vpc", tags={"Name": f"{name}-nat"})
            gateway = NatGateway(self, "nat", allocation_id=eip.id, subnet_id=self.public_subnets[0].id,
                                 tags={"Name": f"{name}-nat"}, depends_on=[igw])
            Route(self, "private-default", route_table_id=self.private_route_table.id,
                  destination_cidr_block="0.0.0.0/0", nat_gateway_id=gateway.id)

    @property
    def private_subnet_ids(self) -> list[str]:
        return [s.id for s in self.private_subnets]

    @property
    def public_subnet_ids(self) -> list[str]:
        return [s.id for s in self.public_subnets]
