"""The one module that imports the AWS provider bindings (``cdktf-cdktf-provider-aws`` 20.1.0).

Why this module exists: the bindings' ``__init__`` imports all 2,135 resource submodules, which costs
15-20 s and about 1.1 GB on every synth (hashicorp/terraform-cdk #3753, #2792). Each submodule only
needs the package's ``_jsii`` assembly loader, so we register a bare package object with the real
``__path__`` and import just ``_jsii`` plus the submodules gpufleet uses. The synthesized JSON is
byte-identical to the plain import.

jsii's node process has the same problem: the package's ``lib/index.js`` requires every resource module.
While this module starts that process, ``NODE_OPTIONS`` requires ``provider_index_hook.js``, which loads that
index lazily. A synth of platform + 2 teams (examples/gpufleet.yaml) took 4.5-5.2 s and 5.0-5.7 CPU-s with
node at 605 MB peak RSS, then 2.6-3.5 s and 2.9-3.8 CPU-s at 190 MB, byte-identical. It only helps if no
cdktf import started node before (``gpufleet.app`` imports this module first).

Switching to another binding package (e.g. CDK Terrain's ``cdktn-provider-aws``) means changing the
package name and the imports below, nowhere else. ``GPUFLEET_PLAIN_PROVIDER_IMPORT=1`` restores the plain
import, which ``scripts/bench-synth`` uses as its baseline.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINDINGS_PACKAGE = "cdktf_cdktf_provider_aws"
PROVIDER_VERSION = "5.100.0"
NODE_INDEX_HOOK = Path(__file__).with_name("provider_index_hook.js")
# The oldest Node.js that the installed jsii runtime supports (its NodeRelease table: Node 20's support
# ended 2026-10-30), and the variable that silences its end-of-life banner for the listed majors.
OLDEST_SUPPORTED_NODE = 22
NODE_EOL_SILENCER = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"


def _load_bindings_lazily() -> None:
    if BINDINGS_PACKAGE in sys.modules or os.environ.get("GPUFLEET_PLAIN_PROVIDER_IMPORT") == "1":
        return
    spec = importlib.util.find_spec(BINDINGS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{BINDINGS_PACKAGE} is not installed (pip install 'cdktf-cdktf-provider-aws==20.1.0')")
    package = types.ModuleType(BINDINGS_PACKAGE)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules[BINDINGS_PACKAGE] = package
    _one_line_node_support_warning()
    with _node_requires(NODE_INDEX_HOOK):  # the first jsii import starts node, with this environment
        importlib.import_module(f"{BINDINGS_PACKAGE}._jsii")


def _one_line_node_support_warning() -> None:
    """On a Node.js older than jsii supports, jsii's wrapper prints an 11-line banner on every synth, which
    its Python side shows as byte-string reprs. Silence it and say the same in one line instead. Set in
    ``os.environ`` so that synth helper processes say nothing; a user who set the variable sees neither."""
    if NODE_EOL_SILENCER in os.environ:
        return
    major = _node_major()
    if major is None or major >= OLDEST_SUPPORTED_NODE:
        return
    os.environ[NODE_EOL_SILENCER] = str(major)
    print(f"warning: Node.js {major} is past the support of jsii (cdktf's runtime): synth works, but install "
          f"Node.js {OLDEST_SUPPORTED_NODE} or newer (or set {NODE_EOL_SILENCER}={major} to hide this)",
          file=sys.stderr)


def _node_major() -> int | None:
    """The major version of the ``node`` on PATH (11 ms), or None when it cannot be told."""
    node = shutil.which("node")
    if node is None:
        return None
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout
        return int(version.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


@contextmanager
def _node_requires(script: Path) -> Iterator[None]:
    """``NODE_OPTIONS`` with ``--require script`` added, for node processes started meanwhile only: set for
    good, it would reach every process gpufleet starts (local agents, their jobs). A path that cannot be
    quoted there (it holds a double quote) is left out: node would refuse to start, and the hook only saves
    time."""
    before = os.environ.get("NODE_OPTIONS")
    if '"' in str(script):
        yield
        return
    os.environ["NODE_OPTIONS"] = f'{before or ""} --require "{script}"'.strip()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NODE_OPTIONS", None)
        else:
            os.environ["NODE_OPTIONS"] = before


_load_bindings_lazily()

# Every binding gpufleet uses, imported from its own submodule. Keep this list sorted by module.
from cdktf_cdktf_provider_aws.autoscaling_group import AutoscalingGroup  # noqa: E402
from cdktf_cdktf_provider_aws.autoscaling_lifecycle_hook import AutoscalingLifecycleHook  # noqa: E402
from cdktf_cdktf_provider_aws.autoscaling_policy import AutoscalingPolicy  # noqa: E402
from cdktf_cdktf_provider_aws.cloudwatch_dashboard import CloudwatchDashboard  # noqa: E402
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup  # noqa: E402
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm  # noqa: E402
from cdktf_cdktf_provider_aws.data_aws_ami import DataAwsAmi  # noqa: E402
from cdktf_cdktf_provider_aws.data_aws_availability_zones import DataAwsAvailabilityZones  # noqa: E402
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity  # noqa: E402
from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocument  # noqa: E402
from cdktf_cdktf_provider_aws.data_aws_kms_alias import DataAwsKmsAlias  # noqa: E402
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition  # noqa: E402
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup  # noqa: E402
from cdktf_cdktf_provider_aws.dynamodb_table import DynamodbTable  # noqa: E402
from cdktf_cdktf_provider_aws.ecr_repository import (  # noqa: E402
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)
from cdktf_cdktf_provider_aws.eip import Eip  # noqa: E402
from cdktf_cdktf_provider_aws.flow_log import FlowLog  # noqa: E402
from cdktf_cdktf_provider_aws.iam_instance_profile import IamInstanceProfile  # noqa: E402
from cdktf_cdktf_provider_aws.iam_policy import IamPolicy  # noqa: E402
from cdktf_cdktf_provider_aws.iam_role import IamRole  # noqa: E402
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy  # noqa: E402
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway  # noqa: E402
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias  # noqa: E402
from cdktf_cdktf_provider_aws.kms_key import KmsKey  # noqa: E402
from cdktf_cdktf_provider_aws.launch_template import LaunchTemplate  # noqa: E402
from cdktf_cdktf_provider_aws.lb import Lb  # noqa: E402
from cdktf_cdktf_provider_aws.lb_listener import LbListener  # noqa: E402
from cdktf_cdktf_provider_aws.lb_listener_rule import LbListenerRule  # noqa: E402
from cdktf_cdktf_provider_aws.lb_target_group import LbTargetGroup  # noqa: E402
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway  # noqa: E402
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags, AwsProviderEndpoints  # noqa: E402
from cdktf_cdktf_provider_aws.route import Route  # noqa: E402
from cdktf_cdktf_provider_aws.route_table import RouteTable  # noqa: E402
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import S3BucketLifecycleConfiguration  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket_logging import S3BucketLoggingA  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import S3BucketOwnershipControls  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket_replication_configuration import S3BucketReplicationConfigurationA  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (  # noqa: E402
    S3BucketServerSideEncryptionConfigurationA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import S3BucketVersioningA  # noqa: E402
from cdktf_cdktf_provider_aws.security_group import SecurityGroup  # noqa: E402
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic  # noqa: E402
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue  # noqa: E402
from cdktf_cdktf_provider_aws.subnet import Subnet  # noqa: E402
from cdktf_cdktf_provider_aws.vpc import Vpc  # noqa: E402
from cdktf_cdktf_provider_aws.vpc_endpoint import VpcEndpoint  # noqa: E402
from cdktf_cdktf_provider_aws.wafv2_web_acl import Wafv2WebAcl  # noqa: E402
from cdktf_cdktf_provider_aws.wafv2_web_acl_association import Wafv2WebAclAssociation  # noqa: E402

S3BucketLogging = S3BucketLoggingA
S3BucketServerSideEncryptionConfiguration = S3BucketServerSideEncryptionConfigurationA
S3BucketReplicationConfiguration = S3BucketReplicationConfigurationA

__all__ = [
    "AutoscalingGroup",
    "AutoscalingLifecycleHook",
    "AutoscalingPolicy",
    "AwsProvider",
    "AwsProviderDefaultTags",
    "AwsProviderEndpoints",
    "CloudwatchDashboard",
    "CloudwatchLogGroup",
    "CloudwatchMetricAlarm",
    "DataAwsAmi",
    "DataAwsAvailabilityZones",
    "DataAwsCallerIdentity",
    "DataAwsIamPolicyDocument",
    "DataAwsKmsAlias",
    "DataAwsPartition",
    "DefaultSecurityGroup",
    "DynamodbTable",
    "EcrRepository",
    "EcrRepositoryEncryptionConfiguration",
    "EcrRepositoryImageScanningConfiguration",
    "Eip",
    "FlowLog",
    "IamInstanceProfile",
    "IamPolicy",
    "IamRole",
    "IamRolePolicy",
    "InternetGateway",
    "KmsAlias",
    "KmsKey",
    "LaunchTemplate",
    "Lb",
    "LbListener",
    "LbListenerRule",
    "LbTargetGroup",
    "NatGateway",
    "Route",
    "RouteTable",
    "RouteTableAssociation",
    "S3Bucket",
    "S3BucketLifecycleConfiguration",
    "S3BucketLogging",
    "S3BucketLoggingA",
    "S3BucketOwnershipControls",
    "S3BucketPolicy",
    "S3BucketPublicAccessBlock",
    "S3BucketReplicationConfiguration",
    "S3BucketReplicationConfigurationA",
    "S3BucketServerSideEncryptionConfiguration",
    "S3BucketServerSideEncryptionConfigurationA",
    "S3BucketVersioningA",
    "SecurityGroup",
    "SnsTopic",
    "SqsQueue",
    "Subnet",
    "Vpc",
    "VpcEndpoint",
    "Wafv2WebAcl",
    "Wafv2WebAclAssociation",
]
