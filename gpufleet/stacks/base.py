"""What every gpufleet stack shares: the AWS provider (real or emulated), the backend and default tags."""

from __future__ import annotations

from typing import Any

from cdktf import LocalBackend, S3Backend, TerraformStack
from constructs import Construct

from gpufleet.config import PlatformConfig
from gpufleet.names import global_name
from gpufleet.providers import (
    AwsProvider,
    AwsProviderDefaultTags,
    AwsProviderEndpoints,
    DataAwsCallerIdentity,
    DataAwsPartition,
)
from gpufleet.schema import TAG_PLATFORM, TAG_TEAM
from gpufleet.target import Target

# Services the emulator serves; the provider sends each of them to its endpoint in local mode.
EMULATED_SERVICES = (
    "acm", "applicationautoscaling", "autoscaling", "cloudwatch", "cloudwatchlogs", "dynamodb", "ec2", "ecr",
    "elbv2", "events", "iam", "kms", "s3", "sns", "sqs", "ssm", "sts",
)


class GpufleetStack(TerraformStack):
    """A TerraformStack with gpufleet's provider, backend and tags already set up."""

    def __init__(self, scope: Construct, stack_id: str, cfg: PlatformConfig, target: Target,
                 team: str | None = None, region: str | None = None) -> None:
        super().__init__(scope, stack_id)
        self.cfg, self.target, self.team = cfg, target, team
        self.region = region or cfg.platform.region
        self.tags = {TAG_PLATFORM: cfg.platform.name, **({TAG_TEAM: team} if team else {})}
        self.provider = AwsProvider(self, "aws", region=self.region,
                                    default_tags=[AwsProviderDefaultTags(tags=self.tags)], **self._provider_args())
        self._configure_backend(stack_id)
        self.partition: str = DataAwsPartition(self, "partition").partition
        self.account_id: str = DataAwsCallerIdentity(self, "account").account_id
        self.account_root = f"arn:{self.partition}:iam::{self.account_id}:root"

    @property
    def rebuild(self) -> bool:
        """A disaster-recovery rebuild: the stack is synthesized for a region other than the platform's."""
        return self.region != self.cfg.platform.region

    def global_name(self, name: str) -> str:
        """``name`` as an account-wide name of this stack (see ``gpufleet.names.global_name``)."""
        return global_name(name, self.region if self.rebuild else None)

    @property
    def secure_bucket_policies(self) -> bool:
        """Conditional Deny statements in bucket policies (TLS-only, team scope); see local.differences."""
        return not self.target.local

    @property
    def bucket_lifecycle_rules(self) -> bool:
        """S3 lifecycle configurations; local mode leaves them out (see local.differences) unless the
        target keeps the provider's waits (``scripts/bench-local-up`` measures both)."""
        return not (self.target.local and self.target.skip_provider_waits)

    def _provider_args(self, alias: str | None = None) -> dict[str, Any]:
        if not self.target.local:
            return {}
        endpoint = self.target.emulator_endpoint
        return {
            # moto's fixed test identity; never real credentials.
            "access_key": "testing", "secret_key": "testing",
            "skip_credentials_validation": True, "skip_metadata_api_check": "true",
            "skip_requesting_account_id": True, "skip_region_validation": True, "s3_use_path_style": True,
            "endpoints": [AwsProviderEndpoints(**{svc: endpoint for svc in EMULATED_SERVICES})],
        }

    def _configure_backend(self, stack_id: str) -> None:
        backend = self.cfg.platform.state_backend
        # A rebuild keeps its state apart from the lost region's, which it must never touch.
        state = f"{self.region}/{stack_id}.tfstate" if self.rebuild else f"{stack_id}.tfstate"
        if self.target.local or backend is None:
            LocalBackend(self, path=str(self.target.state_dir / state))
            return
        S3Backend(self, bucket=backend.bucket, key=f"{backend.key_prefix}/{state}",
                  region=backend.region or self.cfg.platform.region, encrypt=True)
        # S3-native locking (Terraform >= 1.10) has no binding in cdktf 0.21 yet.
        self.add_override("terraform.backend.s3.use_lockfile", True)
