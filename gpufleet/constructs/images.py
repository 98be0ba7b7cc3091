"""A team's container image repository (ECR) for bring-your-own-container jobs and endpoints: tags are
immutable (a job or model names exactly the image it ran), every push is scanned, and images are
encrypted with the team's KMS key."""

from __future__ import annotations

from constructs import Construct

from gpufleet.constructs.policy import Grantee, Statement, sid
from gpufleet.providers import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)

PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
PUSH_ACTIONS = (*PULL_ACTIONS, "ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload", "ecr:DescribeImages", "ecr:DescribeImageScanFindings")
# GetAuthorizationToken has no resource type (AWS service authorization reference): the token only lets
# its holder use the repositories its other statements name.
LOGIN = Statement("EcrLogin", ("ecr:GetAuthorizationToken",), ("*",))


class ImageRepository(Construct):
    def __init__(self, scope: Construct, repo_id: str, *, name: str, key_arn: str, force_delete: bool) -> None:
        super().__init__(scope, repo_id)
        self.repository = EcrRepository(
            self, "repository", name=name, image_tag_mutability="IMMUTABLE", force_delete=force_delete,
            image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=True),
            encryption_configuration=[EcrRepositoryEncryptionConfiguration(encryption_type="KMS",
                                                                           kms_key=key_arn)])
        self.arn, self.url = self.repository.arn, self.repository.repository_url

    def grant_pull(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(LOGIN)
        grantee.add_to_policy(Statement(sid("Pull", label), PULL_ACTIONS, (self.arn,)))

    def grant_push(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(LOGIN)
        grantee.add_to_policy(Statement(sid("Push", label), PUSH_ACTIONS, (self.arn,)))
