"""A finished job's model: ``model.tar.gz`` of the model folder's contents (at the tar root), its sha256,
uploaded to ``models/<model>/<version>/model.tar.gz`` in the artifacts bucket and registered as a
PendingManualApproval version with its lineage. The serving agent reads exactly this.

A version's artifact is written once: a retried job whose tarball differs registers a new version, and
the upload is conditional on the key being absent, so nothing replaces an artifact once registered.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.errors import RuntimeFailure
from gpufleet.schema.model_archive import pack_model_dir
from gpufleet.schema.registry import artifact_key
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.artifacts import ArtifactExists, put_new_object
from gpufleet.store.models import register_model_version

log = logging.getLogger("gpufleet.agent.output")


def package_model(model_dir: Path, dest: Path) -> str:
    """Write ``dest`` (model.tar.gz) from ``model_dir``'s contents; returns the tarball's sha256."""
    return pack_model_dir(model_dir, dest)


def publish_model(clients: AwsClients, runtime: TeamRuntime, model_dir: Path, model_name: str,
                  lineage: dict[str, Any]) -> str | None:
    """Package, register and upload the model; returns ``name:version``, or None if the script saved none."""
    if not any(model_dir.iterdir()):
        log.warning("the job saved no model: nothing to register", extra={"job_id": lineage["job_id"]})
        return None
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "model.tar.gz"
        sha256 = package_model(model_dir, tarball)
        record = register_model_version(clients, runtime, model_name, sha256=sha256, lineage=lineage)
        version = int(record["version"])
        key = artifact_key(model_name, version)
        try:
            put_new_object(clients.s3, runtime.buckets.artifacts, key, tarball, {"sha256": sha256})
        except ArtifactExists as exc:
            if exc.sha256 != sha256:   # never ours to replace: the version keeps the artifact it has
                raise RuntimeFailure("upload model", f"s3://{runtime.buckets.artifacts}/{key} already holds "
                                     f"another artifact (sha256 {exc.sha256})",
                                     "find who wrote it; versions' artifacts are never overwritten") from None
            # else: the same tarball, uploaded by this job before its agent died
    log.info("model registered", extra={"model": model_name, "version": version, "sha256": sha256})
    return f"{model_name}:{version}"
