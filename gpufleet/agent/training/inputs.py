"""Fetch a job's inputs: the code tarball (extracted into the code folder) and each channel's objects,
recording what was read (S3 version id, else ETag) for the model's lineage.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from gpufleet.agent.training.layout import Layout
from gpufleet.aws import AwsClients
from gpufleet.schema.job_spec import JobSpec, split_s3_uri

Input = dict[str, str]


class InputError(Exception):
    """An input the job names cannot be used: the job fails with this as its reason."""


def fetch_code(clients: AwsClients, source: str, layout: Layout) -> str:
    """Download and extract the source tarball into ``layout.code``; returns its sha256."""
    bucket, key = split_s3_uri(source)
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as tmp:
        try:
            body = clients.s3.get_object(Bucket=bucket, Key=key)["Body"]
        except clients.s3.exceptions.NoSuchKey:
            raise InputError(f"source {source} does not exist") from None
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
            tmp.write(chunk)
        tmp.seek(0)
        try:
            with tarfile.open(fileobj=tmp, mode="r:*") as tar:
                tar.extractall(layout.code, filter="data")   # refuses absolute paths, links out, devices
        except (tarfile.TarError, OSError) as exc:
            raise InputError(f"source {source} is not a usable tarball ({exc})") from None
    return digest.hexdigest()


def _objects(clients: AwsClients, bucket: str, prefix: str) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objs.extend(o for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return objs


def fetch_channel(clients: AwsClients, name: str, uri: str, dest: Path) -> list[Input]:
    """Download every object under ``uri`` (a key or a prefix) into ``dest``, keeping relative paths."""
    bucket, prefix = split_s3_uri(uri)
    objs = _objects(clients, bucket, prefix)
    exact = [o for o in objs if o["Key"] == prefix]
    objs = exact or [o for o in objs if o["Key"].startswith(prefix.rstrip("/") + "/") or not prefix]
    if not objs:
        raise InputError(f"channel {name}: nothing at {uri}")
    inputs: list[Input] = []
    base = prefix.rsplit("/", 1)[0] if exact else prefix.rstrip("/")
    for obj in objs:
        rel = obj["Key"][len(base):].lstrip("/") if base else obj["Key"]
        target = (dest / rel).resolve()
        if dest.resolve() not in target.parents:
            raise InputError(f"channel {name}: key {obj['Key']} escapes the channel folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        resp = clients.s3.get_object(Bucket=bucket, Key=obj["Key"])
        with target.open("wb") as f:
            shutil.copyfileobj(resp["Body"], f, 1 << 20)
        ref = {"uri": f"s3://{bucket}/{obj['Key']}"}
        version = resp.get("VersionId")
        if version and version != "null":
            ref["version_id"] = version
        else:
            ref["etag"] = resp["ETag"].strip('"')
        inputs.append(ref)
    return inputs


def fetch_inputs(clients: AwsClients, spec: JobSpec, layout: Layout) -> tuple[str, list[Input]]:
    """(code sha256, input references). Raises InputError for inputs that cannot be used."""
    if spec.source:   # a container job may bring its code in its image
        code_sha = fetch_code(clients, spec.source, layout)
    elif spec.image:
        code_sha = ""
    else:
        raise InputError("spec has no source")
    if spec.entry_point and not (layout.code / spec.entry_point).is_file():
        raise InputError(f"entry point {spec.entry_point} is not in the source")
    inputs: list[Input] = []
    for name, uri in sorted(spec.channels.items()):
        inputs += fetch_channel(clients, name, uri, layout.channel(name))
    return code_sha, inputs
