"""The drill's stand-in for S3 cross-region replication, which the emulator does not perform.

Kept apart from the rebuild on purpose: the rebuild reads only the replica bucket, exactly what
replication would have delivered. On AWS this module is never used.
"""

from __future__ import annotations

from typing import Any


def copy_bucket(s3: Any, source: str, replica: str) -> int:
    """Copy the current version of every object of ``source`` into ``replica``; returns the count."""
    copied = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source):
        for obj in page.get("Contents", []):
            s3.copy_object(Bucket=replica, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]})
            copied += 1
    return copied
