"""Granted actions that no recorded call uses, kept on purpose: role kind → action → why it stays.

``gpufleet audit`` lists every unused grant; those here show their reason instead of asking for removal.
Add an entry only with a reason a reviewer can check; remove the grant from the stacks otherwise.
"""

from __future__ import annotations

KEY_REENCRYPT = "part of the team key's use grant (constructs/keys.py); S3 bucket keys and key rotation re-encrypt"
BUCKET_LISTING = "a bucket read/write grant includes listing and location, which the SDK's S3 transfers may call"

REVIEWED_UNUSED: dict[str, dict[str, str]] = {
    "training": {
        "kms:Encrypt": KEY_REENCRYPT, "kms:ReEncryptFrom": KEY_REENCRYPT, "kms:ReEncryptTo": KEY_REENCRYPT,
        "kms:DescribeKey": KEY_REENCRYPT,
        "s3:GetBucketLocation": BUCKET_LISTING,
        "s3:ListBucketVersions": "checkpoints are versioned; resuming an older checkpoint version lists them",
    },
    "serving": {
        "kms:Encrypt": KEY_REENCRYPT, "kms:ReEncryptFrom": KEY_REENCRYPT, "kms:ReEncryptTo": KEY_REENCRYPT,
        "kms:DescribeKey": KEY_REENCRYPT,
        "s3:GetBucketLocation": BUCKET_LISTING,
    },
    "operator": {
        "kms:Encrypt": KEY_REENCRYPT, "kms:ReEncryptFrom": KEY_REENCRYPT, "kms:ReEncryptTo": KEY_REENCRYPT,
        "kms:DescribeKey": KEY_REENCRYPT,
        "s3:GetBucketLocation": BUCKET_LISTING,
    },
}
