"""``gpufleet bootstrap``: create the Terraform state bucket before the first remote-state deploy.

It cannot live in a stack: the stacks keep their state in it. Idempotent: a second run changes nothing
but re-asserts the secure settings. With ``platform.dr_region`` set, the state bucket replicates to a
versioned ``<bucket>-dr`` in that region, so a DR rebuild still has the state of every region left.
"""

from __future__ import annotations

import json
from typing import Any

from gpufleet.config import PlatformConfig
from gpufleet.errors import UserInputError
from gpufleet.names import LIMITS, fit


def tls_only_policy(bucket: str) -> str:
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]})


def bootstrap_state_bucket(cfg: PlatformConfig, s3: Any, tls_only: bool = True, s3_dr: Any = None,
                           iam: Any = None) -> str:
    """Create (or re-secure) the versioned, encrypted, private state bucket. Returns its name.

    ``tls_only=False`` is for the emulator only, which applies any conditional Deny unconditionally.
    ``s3_dr`` (a client in platform.dr_region) and ``iam`` set up its replication when dr_region is set.
    """
    backend = cfg.platform.state_backend
    if backend is None:
        raise UserInputError(["platform.state_backend: not set (add `state_backend: {bucket: <name>}` "
                              "to use remote state)"])
    secure_bucket(s3, backend.bucket, backend.region or cfg.platform.region, tls_only)
    if cfg.platform.dr_region and s3_dr is not None and iam is not None:
        replicate_state_bucket(s3, s3_dr, iam, backend.bucket, cfg.platform.dr_region, tls_only)
    return backend.bucket


def replica_name(bucket: str) -> str:
    return fit(f"{bucket}-dr", LIMITS["s3"])


def replicate_state_bucket(s3: Any, s3_dr: Any, iam: Any, bucket: str, dr_region: str, tls_only: bool) -> str:
    """A versioned replica of the state bucket in ``dr_region``, fed by S3 replication. Returns its name."""
    replica = replica_name(bucket)
    secure_bucket(s3_dr, replica, dr_region, tls_only)
    role_arn = _replication_role(iam, bucket, replica)
    account = role_arn.split(":")[4]
    s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration={"Role": role_arn, "Rules": [{
        "ID": "state-to-dr", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
        "DeleteMarkerReplication": {"Status": "Enabled"},
        "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
        "Destination": {"Bucket": f"arn:aws:s3:::{replica}", "EncryptionConfiguration": {
            "ReplicaKmsKeyID": f"arn:aws:kms:{dr_region}:{account}:alias/aws/s3"}}}]})
    return replica


def _replication_role(iam: Any, bucket: str, replica: str) -> str:
    """Least privilege: read the state bucket's versions, write replicas, use S3's own KMS keys via S3 only."""
    name = fit(f"{bucket}-replication", LIMITS["iam_role"])
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "s3.amazonaws.com"}}]}
    src, dst = f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{replica}"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": src},
        {"Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl",
                                       "s3:GetObjectVersionTagging"], "Resource": f"{src}/*"},
        {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
         "Resource": f"{dst}/*"},
        # The aws/s3 managed keys have no ARN known before use; kms:ViaService limits them to S3's own calls.
        {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}}]}
    try:
        arn = str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                                  Description=f"replicates {bucket} to {replica}")["Role"]["Arn"])
    iam.put_role_policy(RoleName=name, PolicyName="replicate-state", PolicyDocument=json.dumps(policy))
    return arn


def secure_bucket(s3: Any, bucket: str, region: str, tls_only: bool) -> None:
    """Create ``bucket`` in ``region`` unless it exists; (re-)assert versioning, SSE-KMS, no public access."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **location)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    if tls_only:
        s3.put_bucket_policy(Bucket=bucket, Policy=tls_only_policy(bucket))
