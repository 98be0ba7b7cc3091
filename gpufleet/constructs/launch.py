"""GpuLaunchTemplate: IMDSv2 only (hop limit 1), an encrypted gp3 root volume, no public IP, tags."""

from __future__ import annotations

from collections.abc import Sequence

from cdktf import Fn
from constructs import Construct

from gpufleet.constructs.blocks import blocks
from gpufleet.providers import LaunchTemplate


class GpuLaunchTemplate(Construct):
    """``user_data`` is the plain script (encoded here). ``tags`` go onto instances and volumes too."""

    def __init__(self, scope: Construct, lt_id: str, *, name: str, ami_id: str, root_device_name: str,
                 root_volume_gb: int, instance_profile: str, security_group_ids: list[str], user_data: str,
                 tags: dict[str, str], instance_type: str | None = None,
                 ignore_changes: Sequence[str] = ()) -> None:
        super().__init__(scope, lt_id)
        self.template = LaunchTemplate(
            self, "template", name=name, image_id=ami_id, instance_type=instance_type,
            update_default_version=True, user_data=Fn.base64encode(user_data),
            iam_instance_profile={"name": instance_profile},
            # Hop limit 1: containers on the host cannot reach the instance's credentials.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 1, "instance_metadata_tags": "enabled"},
            block_device_mappings=blocks([{"device_name": root_device_name, "ebs": {
                "volume_size": root_volume_gb, "volume_type": "gp3", "encrypted": "true",
                "delete_on_termination": "true", "throughput": 250, "iops": 3000}}]),
            network_interfaces=blocks([{"associate_public_ip_address": "false", "security_groups": security_group_ids,
                                        "delete_on_termination": "true"}]),
            monitoring={"enabled": True}, ebs_optimized="true",
            tag_specifications=blocks([{"resource_type": kind, "tags": tags} for kind in ("instance", "volume")]),
            tags=tags, lifecycle={"ignore_changes": list(ignore_changes)} if ignore_changes else None)
        self.id: str = self.template.id
        # An instance refresh needs the concrete version, not "$Latest" (terraform-aws-modules gotcha).
        self.latest_version: str = Fn.tostring(self.template.latest_version)
