"""Fetch a model artifact from S3, verify its sha256 against the registry, unpack it safely.

The tarball is hashed while it streams to a temp file, so a tampered or truncated artifact is refused
before a byte of it is unpacked. Extraction uses tarfile's ``data`` filter (no absolute paths,
links out of the tree or device files) into a temp dir renamed into place.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any


class ArtifactRejected(Exception):
    """The artifact is missing, does not match the registry's sha256, or is not a valid model tarball."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ArtifactRejected(f"{uri}: not an s3://bucket/key URI (fix the model record's artifact_uri)")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def fetch_model(s3: Any, uri: str, sha256: str, dest: Path) -> Path:
    """Download ``uri``, check ``sha256``, unpack into ``dest`` (replaced if present); return ``dest``."""
    bucket, key = parse_s3_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        tarball = Path(tmp) / "model.tar.gz"
        digest = hashlib.sha256()
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with tarball.open("wb") as out:
                for chunk in body.iter_chunks(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except Exception as exc:
            raise ArtifactRejected(f"{uri}: download failed ({type(exc).__name__}: {exc})") from exc
        if digest.hexdigest() != sha256.lower():
            raise ArtifactRejected(f"{uri}: sha256 {digest.hexdigest()} does not match the registry's "
                                   f"{sha256} (the artifact was changed after registration: re-register it)")
        unpacked = Path(tmp) / "model"
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                archive.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise ArtifactRejected(f"{uri}: not a valid model.tar.gz ({exc})") from exc
        shutil.rmtree(dest, ignore_errors=True)
        unpacked.rename(dest)
    return dest
