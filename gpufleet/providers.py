"""The one module that imports the AWS provider bindings (``cdktf-cdktf-provider-aws`` 20.1.0).

Why this module exists: the bindings' ``__init__`` imports all 2,135 resource submodules, which costs
15-20 s and about 1.1 GB on every synth (hashicorp/terraform-cdk #3753, #2792). Each submodule only
needs the package's ``_jsii`` assembly loader, so we register a bare package object with the real
``__path__`` and import just ``_jsii`` plus the submodules gpufleet uses. The synthesized JSON is
byte-identical to the plain import.

Switching to another binding package (e.g. CDK Terrain's ``cdktn-provider-aws``) means changing the
package name and the imports below, nowhere else. ``GPUFLEET_PLAIN_PROVIDER_IMPORT=1`` restores the plain
import, which ``scripts/bench-synth`` uses as its baseline.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

BINDINGS_PACKAGE = "cdktf_cdktf_provider_aws"
PROVIDER_VERSION = "5.100.0"


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
    importlib.import_module(f"{BINDINGS_PACKAGE}._jsii")


_load_bindings_lazily()

# Every binding gpufleet uses, imported from its own submodule. Keep this list sorted by module.
from cdktf_cdktf_provider_aws.dynamodb_table import DynamodbTable  # noqa: E402
from cdktf_cdktf_provider_aws.kms_key import KmsKey  # noqa: E402
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags, AwsProviderEndpoints  # noqa: E402
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket  # noqa: E402
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue  # noqa: E402
from cdktf_cdktf_provider_aws.subnet import Subnet  # noqa: E402
from cdktf_cdktf_provider_aws.vpc import Vpc  # noqa: E402

__all__ = [
    "AwsProvider",
    "AwsProviderDefaultTags",
    "AwsProviderEndpoints",
    "DynamodbTable",
    "KmsKey",
    "S3Bucket",
    "SqsQueue",
    "Subnet",
    "Vpc",
]
