"""EncryptionKey: a customer-managed KMS key with rotation, an alias and a least-privilege key policy."""

from __future__ import annotations

from collections.abc import Sequence

from cdktf import TerraformProvider
from constructs import Construct

from gpufleet.constructs.policy import Condition, Grantee, PolicyDocument, Statement, sid
from gpufleet.providers import KmsAlias, KmsKey

# What the account root may do with the key. Listing them (not kms:*) keeps wildcard actions out
# while still letting IAM policies in the account administer it, as AWS's default key policy does.
ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt", "kms:DeleteAlias",
    "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation",
    "kms:Encrypt", "kms:GenerateDataKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListAliases",
    "kms:ListGrants", "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:ReEncryptFrom", "kms:ReEncryptTo",
    "kms:RetireGrant", "kms:RevokeGrant", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource",
    "kms:UpdateAlias", "kms:UpdateKeyDescription",
)
# No DescribeKey: it takes no encryption context, so the condition that pins the group could never match.
LOG_SERVICE_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo")
# gpufleet never calls KMS itself: S3 (SSE-KMS), SQS and DynamoDB use the key on the caller's behalf, with
# GenerateDataKey to write and Decrypt to read. Encrypt, ReEncrypt* and DescribeKey have no caller.
USE_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class EncryptionKey(Construct):
    """A KMS key, rotated yearly. ``services`` may use it on behalf of this account (e.g. CloudWatch
    publishing to an encrypted SNS topic); ``account_root`` is ``arn:<partition>:iam::<account>:root``."""

    def __init__(self, scope: Construct, key_id: str, *, alias: str, description: str, account_root: str,
                 account_id: str, services: Sequence[str] = (), deletion_window_days: int = 30,
                 provider: TerraformProvider | None = None) -> None:
        super().__init__(scope, key_id)
        statements = [Statement("AccountAdministers", ADMIN_ACTIONS, ("*",), principals={"AWS": (account_root,)})]
        if services:
            statements.append(Statement(
                "ServicesUseForThisAccount", ("kms:Decrypt", "kms:GenerateDataKey"), ("*",),
                principals={"Service": tuple(services)},
                conditions=(Condition("StringEquals", "aws:SourceAccount", (account_id,)),)))
        # In a key policy "*" means this key only.
        self.policy = PolicyDocument(self, "policy", statements)
        reason = 'a key policy\'s "*" resource is this key only; IAM policies in the account grant the rest'
        self.policy.skip_checks({"CKV_AWS_109": reason, "CKV_AWS_111": reason, "CKV_AWS_356": reason})
        self.key = KmsKey(self, "key", provider=provider, description=description, enable_key_rotation=True,
                          deletion_window_in_days=deletion_window_days, policy=self.policy.json)
        KmsAlias(self, "alias", provider=provider, name=f"alias/{alias}", target_key_id=self.key.key_id)
        self.arn: str = self.key.arn
        self.key_id: str = self.key.key_id

    def grant_encrypt_decrypt(self, grantee: Grantee, label: str) -> None:
        """Read and write data that a service encrypts with this key on the grantee's behalf."""
        grantee.add_to_policy(Statement(sid("Use", label, "Key"), USE_ACTIONS, (self.arn,)))

    def grant_decrypt(self, grantee: Grantee, label: str) -> None:
        """Read data that a service encrypted with this key (replicas)."""
        grantee.add_to_policy(Statement(sid("Decrypt", label, "Key"), ("kms:Decrypt",), (self.arn,)))

    def allow_log_group(self, region: str, log_group_arn: str, label: str) -> None:
        """Let CloudWatch Logs encrypt and read one log group's events with this key (AWS docs, "Encrypt log
        data in CloudWatch Logs using AWS KMS"); the encryption context pins it to that group."""
        self.policy.add(Statement(
            "CloudWatchLogsUse" + sid(label), LOG_SERVICE_ACTIONS, ("*",),
            principals={"Service": (f"logs.{region}.amazonaws.com",)},
            # The context key is a String to IAM, so StringEquals (exact), not ArnEquals.
            conditions=(Condition("StringEquals", "kms:EncryptionContext:aws:logs:arn", (log_group_arn,)),)))
