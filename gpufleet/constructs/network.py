"""Network: a VPC across several AZs with private subnets, optional public subnets and NAT, VPC endpoints
for every AWS service the hosts call, a locked-down default security group, and flow logs to S3."""

from __future__ import annotations

import ipaddress

from cdktf import Fn
from constructs import Construct

from gpufleet.constructs.blocks import blocks
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
    SecurityGroup,
    Subnet,
    Vpc,
    VpcEndpoint,
)

# Every AWS service the host agents call (gpufleet/agent/**), as boto3 client name -> VPC endpoint service
# (com.amazonaws.<region>.<service>). Private hosts reach them through these endpoints; without a NAT
# gateway nothing else is reachable. STS is listed because training agents assume the team's job role for
# each job. Not listed, because hosts never call them: KMS (S3, SQS and DynamoDB call it for the hosts,
# server-side) and EC2 (the identity comes from IMDS).
HOST_SERVICES = {"s3": "s3", "dynamodb": "dynamodb", "sqs": "sqs", "cloudwatch": "monitoring", "logs": "logs",
                 "autoscaling": "autoscaling", "ecr": "ecr.api", "sts": "sts"}
# Endpoints for traffic that is no boto3 client call: image pulls from ECR's registry (its layers then
# come from S3, through the S3 gateway endpoint).
HOST_TRAFFIC = ("ecr.dkr",)
# Free and routed by the private route table: always made, so S3 and DynamoDB traffic never pays NAT.
GATEWAY_SERVICES = ("s3", "dynamodb")
# Interface endpoints (an ENI per AZ, billed hourly): made only when there is no NAT gateway.
INTERFACE_SERVICES = (*(v for v in HOST_SERVICES.values() if v not in GATEWAY_SERVICES), *HOST_TRAFFIC)


class Network(Construct):
    """Subnets are /24s: private ``i`` at offset ``i``, public ``i`` at offset ``az_count + i``.

    ``public_subnets`` adds an internet gateway and public subnets (for internet-facing load balancers);
    ``nat`` adds one NAT gateway so private hosts reach the internet (needs ``public_subnets``); without
    it, interface endpoints (private DNS on, HTTPS from the VPC only) serve ``INTERFACE_SERVICES``.
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
        cidrs = list(ipaddress.IPv4Network(cidr).subnets(new_prefix=24))
        self.private_route_table = RouteTable(self, "private-rt", vpc_id=self.vpc.id,
                                              tags={"Name": f"{name}-private"})
        self.private_subnets = [self._subnet(f"private-{i}", str(cidrs[i]), Fn.element(azs.names, i),
                                             self.private_route_table, name) for i in range(az_count)]
        self.public_subnets: list[Subnet] = []
        if public_subnets:
            self._public(name, cidrs[az_count:2 * az_count], azs, nat)
        self.endpoint_services: list[str] = []
        for service in GATEWAY_SERVICES:
            VpcEndpoint(self, f"{service}-endpoint", vpc_id=self.vpc.id,
                        service_name=f"com.amazonaws.{region}.{service}", vpc_endpoint_type="Gateway",
                        route_table_ids=[self.private_route_table.id],
                        tags={"Name": f"{name}-{service}"})
            self.endpoint_services.append(service)
        if not nat:
            self._interface_endpoints(name, region)

    def _interface_endpoints(self, name: str, region: str) -> None:
        """One endpoint per service in every private subnet; private DNS makes the regional API names
        resolve to them, so agents need no endpoint configuration."""
        sg = SecurityGroup(self, "endpoints-sg", name=f"{name}-aws-endpoints", vpc_id=self.vpc.id,
                           description="Interface VPC endpoints: HTTPS from hosts in this VPC only",
                           ingress=blocks([{"description": "HTTPS from hosts in this VPC", "protocol": "tcp",
                                            "from_port": 443, "to_port": 443, "cidr_blocks": [self.cidr]}]),
                           tags={"Name": f"{name}-aws-endpoints"})
        for service in INTERFACE_SERVICES:
            VpcEndpoint(self, f"{service}-endpoint", vpc_id=self.vpc.id,
                        service_name=f"com.amazonaws.{region}.{service}", vpc_endpoint_type="Interface",
                        private_dns_enabled=True, subnet_ids=self.private_subnet_ids, security_group_ids=[sg.id],
                        tags={"Name": f"{name}-{service}"})
            self.endpoint_services.append(service)

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
