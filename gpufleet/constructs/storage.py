"""SecureBucket: an S3 bucket that is private, versioned, encrypted and logged unless told otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktf import TerraformProvider
from constructs import Construct

from gpufleet.constructs.blocks import blocks
from gpufleet.constructs.policy import Condition, Grantee, PolicyDocument, Statement, sid
from gpufleet.constructs.suppress import skip_checks
from gpufleet.providers import (
    S3Bucket,
    S3BucketLifecycleConfiguration,
    S3BucketLogging,
    S3BucketOwnershipControls,
    S3BucketPolicy,
    S3BucketPublicAccessBlock,
    S3BucketReplicationConfiguration,
    S3BucketServerSideEncryptionConfiguration,
    S3BucketVersioningA,
)

# What the grants give: the calls gpufleet makes (``gpufleet audit`` lists any granted action no call uses).
# Nothing reads an object by version, deletes one, or lists versions or multipart parts.
READ_ACTIONS = ("s3:GetObject",)
# boto3's transfer manager writes large files as multipart uploads (s3:PutObject) and aborts one that fails.
WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")
# Write-once grants (``grant_create_only``): S3's request keys for conditional writes (AWS, "Enforce
# conditional writes on Amazon S3 buckets"). ``s3:if-none-match`` is present when the request carries
# ``If-None-Match`` (PutObject, CompleteMultipartUpload); ``s3:ObjectCreationOperation`` is false for
# CreateMultipartUpload, UploadPart and UploadPartCopy, which take no conditional header, true for the
# requests that create the object (PutObject, CompleteMultipartUpload, CopyObject).
IF_NONE_MATCH_KEY = "s3:if-none-match"
OBJECT_CREATION_KEY = "s3:ObjectCreationOperation"
# Readers list: to find a prefix's objects, and so that a missing key answers 404, not 403.
LIST_ACTIONS = ("s3:ListBucket",)
# What the team-only Deny guards: every object action, granted or not, so a grant added later stays fenced.
GUARDED_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload",
                          "s3:ListMultipartUploadParts", "s3:DeleteObject", "s3:DeleteObjectVersion")


@dataclass(frozen=True)
class AccessLogs:
    """Where S3 server access logs go (the target bucket must use SSE-S3, not SSE-KMS)."""

    bucket: str
    prefix: str


class SecureBucket(Construct):
    """Versioned, SSE-KMS with bucket keys (SSE-S3 when ``key_arn`` is None), all four public-access blocks,
    BucketOwnerEnforced, access logs, lifecycle hygiene, and optionally a TLS-only and principal-scoped policy.

    ``enforce_tls`` and ``only_principals`` add conditional Deny statements; ``only_principals`` limits
    object reads and writes to those principal ARNs (patterns allowed).
    """

    def __init__(self, scope: Construct, bucket_id: str, *, name: str, key_arn: str | None,
                 access_logs: AccessLogs | None, enforce_tls: bool = True,
                 only_principals: Sequence[str] = (), noncurrent_expiry_days: int | None = None,
                 abort_multipart_days: int = 7, expire_days: int | None = None,
                 force_destroy: bool = False, lifecycle_rules: bool = True,
                 provider: TerraformProvider | None = None) -> None:
        super().__init__(scope, bucket_id)
        self.provider = provider
        self.bucket = S3Bucket(self, "bucket", provider=self.provider, bucket=name, force_destroy=force_destroy)
        self.name: str = name
        self.arn: str = self.bucket.arn
        b = self.bucket.id
        self.versioning = S3BucketVersioningA(self, "versioning", provider=self.provider, bucket=b,
                                              versioning_configuration={"status": "Enabled"})
        sse = ({"sse_algorithm": "aws:kms", "kms_master_key_id": key_arn} if key_arn
               else {"sse_algorithm": "AES256"})
        S3BucketServerSideEncryptionConfiguration(self, "sse", provider=self.provider, bucket=b, rule=blocks([
            {"apply_server_side_encryption_by_default": sse, "bucket_key_enabled": key_arn is not None}]))
        self.public_access = S3BucketPublicAccessBlock(
            self, "public-access", provider=self.provider, bucket=b, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True)
        S3BucketOwnershipControls(self, "ownership", provider=self.provider, bucket=b,
                                  rule={"object_ownership": "BucketOwnerEnforced"})
        if access_logs:
            S3BucketLogging(self, "logging", provider=self.provider, bucket=b, target_bucket=access_logs.bucket,
                            target_prefix=access_logs.prefix)
        if lifecycle_rules:
            self._lifecycle(abort_multipart_days, noncurrent_expiry_days, expire_days)
        else:
            skip_checks(self.bucket, {"CKV2_AWS_61": "local mode only: the emulator runs no lifecycle rules "
                                                     "(gpufleet/local/differences.py)"})
        self.policy = PolicyDocument(self, "policy")
        if enforce_tls:
            self.policy.add(Statement(
                "DenyInsecureTransport", ("s3:*",),
                (self.arn, f"{self.arn}/*"), effect="Deny", principals={"AWS": ("*",)},
                conditions=(Condition("Bool", "aws:SecureTransport", ("false",)),)))
        if only_principals:
            self.policy.add(Statement(
                "DenyObjectAccessOutsideTeam", GUARDED_OBJECT_ACTIONS, (f"{self.arn}/*",), effect="Deny",
                principals={"AWS": ("*",)},
                conditions=(Condition("ArnNotLike", "aws:PrincipalArn", tuple(only_principals)),)))
        self._policy_resource: S3BucketPolicy | None = None
        self._attach_policy()

    def _lifecycle(self, abort_days: int, noncurrent_days: int | None, expire_days: int | None) -> None:
        rule: dict[str, object] = {
            "id": "hygiene", "status": "Enabled", "filter": [{"prefix": ""}],
            "abort_incomplete_multipart_upload": [{"days_after_initiation": abort_days}],
        }
        if noncurrent_days:
            rule["noncurrent_version_expiration"] = [{"noncurrent_days": noncurrent_days}]
        if expire_days:
            rule["expiration"] = [{"days": expire_days}]
        # The lifecycle applies to versions, so it waits for versioning to exist.
        S3BucketLifecycleConfiguration(self, "lifecycle", provider=self.provider, bucket=self.bucket.id,
                                       rule=blocks([rule]), depends_on=[self.versioning])

    def _attach_policy(self) -> None:
        if self.policy.empty or self._policy_resource is not None:
            return
        # After the public-access block: S3 rejects policy writes that race it.
        self._policy_resource = S3BucketPolicy(self, "bucket-policy", provider=self.provider, bucket=self.bucket.id,
                                               policy=self.policy.json, depends_on=[self.public_access])

    def add_to_resource_policy(self, statement: Statement) -> None:
        self.policy.add(statement)
        self._attach_policy()

    def skip_checks(self, reasons: dict[str, str]) -> None:
        skip_checks(self.bucket, reasons)

    def _objects(self, prefix: str) -> str:
        return f"{self.arn}/{prefix}*"

    def grant_read(self, grantee: Grantee, label: str, prefix: str = "", *, list_bucket: bool = True) -> None:
        """Read objects under ``prefix`` and list the bucket; ``list_bucket=False`` for a reader that only
        fetches keys it is told (a missing one is then a 403, not a 404)."""
        grantee.add_to_policy(Statement(sid("Read", label), READ_ACTIONS, (self._objects(prefix),)))
        if list_bucket:
            self._grant_list(grantee, label)

    def grant_write(self, grantee: Grantee, label: str, prefix: str = "", *, multipart: bool = True) -> None:
        """Write objects under ``prefix``; a writer that never reads needs no listing either.
        ``multipart=False`` for writers that only ever put small objects in one request."""
        actions = WRITE_ACTIONS if multipart else ("s3:PutObject",)
        grantee.add_to_policy(Statement(sid("Write", label), actions, (self._objects(prefix),)))

    def grant_create_only(self, grantee: Grantee, label: str, prefix: str) -> None:
        """Add objects under ``prefix``, never replace one: the request that creates the object must carry
        ``If-None-Match: *`` (an existing key then answers 412). A multipart upload's create and parts take
        no conditional header and create nothing, so they are allowed; its completion is the conditional put.
        CopyObject onto the prefix is refused (S3 supports no conditional copy)."""
        objects = (self._objects(prefix),)
        grantee.add_to_policy(Statement(sid("CreateOnly", label), ("s3:PutObject",), objects, conditions=(
            Condition("Null", IF_NONE_MATCH_KEY, ("false",)),)))
        grantee.add_to_policy(Statement(sid("MultipartParts", label), ("s3:PutObject",), objects, conditions=(
            Condition("Bool", OBJECT_CREATION_KEY, ("false",)),)))
        grantee.add_to_policy(Statement(sid("AbortUpload", label), ("s3:AbortMultipartUpload",), objects))

    def grant_read_write(self, grantee: Grantee, label: str, prefix: str = "") -> None:
        """Read and write objects under ``prefix`` (never delete them) and list the bucket."""
        grantee.add_to_policy(Statement(sid("ReadWrite", label), READ_ACTIONS + WRITE_ACTIONS,
                                        (self._objects(prefix),)))
        self._grant_list(grantee, label)

    def replicate_to(self, replica: SecureBucket, *, role: Grantee, role_arn: str, source_key_arn: str,
                     replica_key_arn: str, ignore_rule_drift: bool = False) -> None:
        """Replicate every object version, encrypted under ``replica_key_arn``, to ``replica`` (another region).

        ``ignore_rule_drift`` is for emulators that store a reduced rule (see gpufleet.local.differences)."""
        role.add_to_policy(Statement("ReadForReplication", ("s3:GetReplicationConfiguration", "s3:ListBucket"),
                                     (self.arn,)))
        role.add_to_policy(Statement("ReadVersionsForReplication", (
            "s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"),
            (f"{self.arn}/*",)))
        role.add_to_policy(Statement("WriteReplicas", ("s3:ReplicateObject", "s3:ReplicateDelete",
                                                       "s3:ReplicateTags"), (f"{replica.arn}/*",)))
        role.add_to_policy(Statement("DecryptSource", ("kms:Decrypt",), (source_key_arn,)))
        role.add_to_policy(Statement("EncryptReplica", ("kms:Encrypt", "kms:GenerateDataKey"), (replica_key_arn,)))
        S3BucketReplicationConfiguration(
            self, "replication", bucket=self.bucket.id, role=role_arn, provider=self.provider,
            depends_on=[self.versioning, replica.versioning],
            lifecycle={"ignore_changes": ["rule"]} if ignore_rule_drift else None, rule=blocks([{
                "id": "disaster-recovery", "status": "Enabled", "filter": {"prefix": ""},
                "delete_marker_replication": {"status": "Enabled"},
                "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"}},
                "destination": {"bucket": replica.arn, "storage_class": "STANDARD",
                                "encryption_configuration": {"replica_kms_key_id": replica_key_arn}}}]))

    def _grant_list(self, grantee: Grantee, label: str) -> None:
        grantee.add_to_policy(Statement(sid("List", label), LIST_ACTIONS, (self.arn,)))
