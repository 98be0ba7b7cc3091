"""CKV_GPUFLEET_1: every EBS volume a launch template defines is encrypted.

checkov has no built-in check for launch templates' block device mappings (it checks
aws_launch_configuration and aws_instance only), so a GPU host's root volume could go unencrypted.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


def _first(value: Any) -> Any:
    """checkov wraps HCL values in one-element lists; unwrap them."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


class LaunchTemplateEbsEncrypted(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(name="Ensure launch template EBS volumes are encrypted", id="CKV_GPUFLEET_1",
                         categories=[CheckCategories.ENCRYPTION], supported_resources=["aws_launch_template"])

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        mappings = conf.get("block_device_mappings") or []
        if not mappings:
            return CheckResult.UNKNOWN  # the AMI's own mappings apply; nothing to judge here
        for mapping in mappings:
            ebs = _first((mapping or {}).get("ebs"))
            if not ebs:
                continue  # ephemeral (instance store) device
            if str(_first(ebs.get("encrypted"))).lower() not in ("true", "1"):
                return CheckResult.FAILED
        return CheckResult.PASSED


check = LaunchTemplateEbsEncrypted()
