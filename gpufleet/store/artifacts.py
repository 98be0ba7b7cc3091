"""Write a model artifact exactly once: every put is conditional on the key being absent (S3
``If-None-Match: *``), so a registered version's artifact can never be replaced by a later upload.

Up to 5 GiB goes in one PutObject; larger artifacts go in parts, the completion carrying the condition.
IAM requires it too: the only grants on ``models/`` are conditional (``SecureBucket.grant_create_only``).
Both writers use it: the training agent for what a job produced, the operator for a model brought in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

SINGLE_PUT_LIMIT = 5 * 1024**3     # S3's largest single PUT
PART_SIZE = 256 * 1024**2


class ArtifactExists(Exception):
    """The key already holds an object; its ``sha256`` metadata (None if absent) is on the exception."""

    def __init__(self, key: str, sha256: str | None) -> None:
        super().__init__(f"{key} already exists (sha256 {sha256})")
        self.key, self.sha256 = key, sha256


def _is_precondition_failure(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") in ("PreconditionFailed", "412") or \
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412


def put_new_object(s3: Any, bucket: str, key: str, path: Path, metadata: dict[str, str],
                   content_type: str = "application/gzip") -> None:
    """Upload ``path`` to ``key`` unless the key exists; raises ``ArtifactExists`` if it does."""
    try:
        if path.stat().st_size <= SINGLE_PUT_LIMIT:
            with path.open("rb") as body:
                s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata, ContentType=content_type,
                              IfNoneMatch="*")
        else:
            _put_in_parts(s3, bucket, key, path, metadata, content_type)
    except ClientError as exc:
        if not _is_precondition_failure(exc):
            raise
        head = s3.head_object(Bucket=bucket, Key=key)
        raise ArtifactExists(key, head.get("Metadata", {}).get("sha256")) from None


def _put_in_parts(s3: Any, bucket: str, key: str, path: Path, metadata: dict[str, str], content_type: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata,
                                           ContentType=content_type)["UploadId"]
    try:
        parts = []
        with path.open("rb") as f:
            for number, chunk in enumerate(iter(lambda: f.read(PART_SIZE), b""), start=1):
                etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                      Body=chunk)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, IfNoneMatch="*",
                                     MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
