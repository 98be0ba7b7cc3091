"""Models not trained by a gpufleet job: register a ``model.tar.gz`` (a SageMaker one, or any model
folder) from a path or S3, optionally with SageMaker inference code packed into its ``code/`` folder; and
package new code onto a registered version. Each makes a new ``PendingManualApproval`` version with its
sha256, so it goes through the same approval and guarded rollout as a trained one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gpufleet.aws import AwsClients
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.registry.export import export_registry
from gpufleet.schema.job_spec import NAME, split_s3_uri
from gpufleet.schema.model_archive import (
    CODE_DIR,
    DEFAULT_MODEL_FILES,
    INFERENCE_SCRIPT,
    file_sha256,
    pack_model_dir,
    servable,
    unpack_model_archive,
)
from gpufleet.schema.registry import artifact_key
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.artifacts import ArtifactExists, put_new_object
from gpufleet.store.dynamo import Record
from gpufleet.store.models import get_model_version, register_model_version

_AWS_ERRORS = (ClientError, BotoCoreError)


def parse_metrics(pairs: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``--metric k=v`` values as numbers."""
    metrics: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            metrics[key.strip()] = float(value)
        except ValueError:
            raise UserInputError([f"--metric {pair!r}: not NAME=NUMBER (e.g. --metric accuracy=0.97)"]) from None
    return metrics


def _check_name(name: str) -> None:
    if not re.match(NAME, name):
        raise UserInputError([f"model name {name!r}: not lower-case letters, digits and dashes, at most 63 "
                              "(e.g. digits-external)"])


def _check_code_dir(code: Path) -> None:
    if not code.is_dir():
        raise UserInputError([f"--code {code}: not a folder (give the folder holding inference.py)"])
    if not (code / INFERENCE_SCRIPT).is_file():
        raise UserInputError([f"--code {code}: no {INFERENCE_SCRIPT} in it (SageMaker's code folder holds "
                              "inference.py and optionally requirements.txt)"])


def _fetch_artifact(clients: AwsClients, artifact: str, dest: Path) -> None:
    """The artifact, as a local tarball at ``dest`` (downloaded, copied, or packed from a folder)."""
    if artifact.startswith("s3://"):
        bucket, key = split_s3_uri(artifact)
        try:
            clients.s3.download_file(bucket, key, str(dest))
        except _AWS_ERRORS as exc:
            raise UserInputError([f"--artifact {artifact}: cannot be read ({exc}) (check the URI and that "
                                  "the operator role may read it)"]) from None
        return
    path = Path(artifact)
    if path.is_dir():
        pack_model_dir(path, dest)
    elif path.is_file():
        shutil.copyfile(path, dest)
    else:
        raise UserInputError([f"--artifact {artifact}: no such file or folder (give a model.tar.gz, a model "
                              "folder or an s3:// URI)"])


def _unpack(tarball: Path, dest: Path, where: str) -> None:
    try:
        unpack_model_archive(tarball, dest)
    except (tarfile.TarError, OSError) as exc:
        raise UserInputError([f"{where}: not a usable model.tar.gz ({exc}) (pack the model folder's contents "
                              "with `tar czf model.tar.gz -C DIR .`)"]) from None


def _code_sha256(code_dir: Path) -> str:
    """A sha256 over the code folder's files (paths and contents): which inference code a version has."""
    digest = hashlib.sha256()
    for path in sorted(p for p in code_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(code_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _attach_code(model_dir: Path, code: Path) -> str:
    """Replace the model's ``code/`` with ``code``'s files; returns their sha256."""
    target = model_dir / CODE_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(code, target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return _code_sha256(target)


def _is_gzip_tar(tarball: Path) -> bool:
    try:
        with tarfile.open(tarball, "r:gz"):
            return True
    except (tarfile.TarError, OSError):
        return False


def _publish(clients: AwsClients, runtime: TeamRuntime, name: str, model_dir: Path, tarball: Path | None,
             where: str, lineage: Record) -> Record:
    """Claim the next version, upload ``tarball`` (packed from ``model_dir`` when None), export."""
    if lineage.get("serves_in") != "image" and not servable(model_dir):
        raise UserInputError([f"{where}: no {CODE_DIR}/{INFERENCE_SCRIPT} and no "
                              f"{' or '.join(DEFAULT_MODEL_FILES)} at the archive's root (add --code DIR, "
                              "pack the model folder's contents, not the folder, or pass --for-image if an "
                              "endpoint's image serves it)"])
    with tempfile.TemporaryDirectory(prefix="gpufleet-model-") as tmp:
        if tarball is None:
            tarball = Path(tmp) / "model.tar.gz"
            pack_model_dir(model_dir, tarball)
        sha256 = file_sha256(tarball)
        record = register_model_version(clients, runtime, name, sha256=sha256, lineage=lineage)
        version = int(record["version"])
        try:
            # Write-once, as IAM requires on models/: a key that exists (another writer's) answers 412.
            put_new_object(clients.s3, runtime.buckets.artifacts, artifact_key(name, version), tarball,
                           {"sha256": sha256})
        except (*_AWS_ERRORS, ArtifactExists) as exc:
            raise RuntimeFailure("upload the artifact", f"{name}:{version}: {exc}",
                                 f"reject {name}:{version} and register again") from None
    export_registry(clients, runtime)
    return record


def register_external_model(clients: AwsClients, runtime: TeamRuntime, name: str, artifact: str, *,
                            code: Path | None = None, metrics: dict[str, float] | None = None,
                            description: str | None = None, for_image: bool = False) -> Record:
    """Register a model trained elsewhere (lineage ``source: external``), optionally with inference code.
    ``for_image``: an endpoint's image serves it, so its format is the image's business (not checked)."""
    _check_name(name)
    if code is not None:
        _check_code_dir(code)
    lineage: Record = {"source": "external", "artifact": artifact, "metrics": metrics or {}}
    if for_image:
        lineage["serves_in"] = "image"
    if description:
        lineage["description"] = description
    with tempfile.TemporaryDirectory(prefix="gpufleet-model-") as tmp:
        tarball, model_dir = Path(tmp) / "given.tar.gz", Path(tmp) / "model"
        _fetch_artifact(clients, artifact, tarball)
        _unpack(tarball, model_dir, f"--artifact {artifact}")
        lineage["artifact_sha256"] = file_sha256(tarball)
        if code is not None:
            lineage["inference_code_sha256"] = _attach_code(model_dir, code)
        elif (model_dir / CODE_DIR).is_dir():
            lineage["inference_code_sha256"] = _code_sha256(model_dir / CODE_DIR)
        # Unchanged bytes when nothing is added: the registered sha256 is the one the user has.
        as_given = tarball if code is None and _is_gzip_tar(tarball) else None
        return _publish(clients, runtime, name, model_dir, as_given, f"--artifact {artifact}", lineage)


def package_model_version(clients: AwsClients, runtime: TeamRuntime, name: str, version: int,
                          code: Path) -> Record:
    """A new version of ``name`` with ``version``'s model and ``code`` as its inference code."""
    _check_code_dir(code)
    base = get_model_version(clients, runtime, name, version)
    old: dict[str, Any] = dict(base.get("lineage") or {})
    lineage: Record = {k: v for k, v in old.items() if k not in ("job_id", "inference_code_sha256")}
    lineage["packaged_from"] = f"{name}:{version}"
    if old.get("job_id"):
        # Not ``job_id``: registration is idempotent per job, and this is a new version, not a retry.
        lineage["training_job_id"] = old["job_id"]
    with tempfile.TemporaryDirectory(prefix="gpufleet-model-") as tmp:
        tarball, model_dir = Path(tmp) / "base.tar.gz", Path(tmp) / "model"
        _fetch_artifact(clients, str(base["artifact_uri"]), tarball)
        if file_sha256(tarball) != base.get("sha256"):
            raise RuntimeFailure("package", f"{name}:{version}'s artifact does not match its registered sha256",
                                 f"reject {name}:{version}; register the model again")
        _unpack(tarball, model_dir, f"{name}:{version}")
        lineage["inference_code_sha256"] = _attach_code(model_dir, code)
        return _publish(clients, runtime, name, model_dir, None, f"{name}:{version}", lineage)
