"""``gpufleet bootstrap``: create the Terraform state bucket before the first remote-state deploy.

It cannot live in a stack: the stacks keep their state in it. Idempotent: a second run changes nothing
but re-asserts the secure settings.
"""

from __future__ import annotations

import json
from typing import Any

from gpufleet.config import PlatformConfig
from gpufleet.errors import UserInputError


def tls_only_policy(bucket: str) -> str:
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]})


def bootstrap_state_bucket(cfg: PlatformConfig, s3: Any, tls_only: bool = True) -> str:
    """Create (or re-secure) the versioned, encrypted, private state bucket. Returns its name.

    ``tls_only=False`` is for the emulator only, which applies any conditional Deny unconditionally.
    """
    backend = cfg.platform.state_backend
    if backend is None:
        raise UserInputError(["platform.state_backend: not set (add `state_backend: {bucket: <name>}` "
                              "to use remote state)"])
    region = backend.region or cfg.platform.region
    bucket = backend.bucket
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
    return bucket
