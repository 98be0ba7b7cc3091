"""The team's models table: versions monotonic per model name (lower floor: hosts and the CLI both write it).

A version number is claimed by a put conditional on ``attribute_not_exists``; a loser re-reads the
latest version and tries the next number. Registration is idempotent per training job and artifact: a
job retried after a crash gets back the version it registered for the same tarball (sha256), and a new
version for a different one, so a registered version's artifact never changes. Items have the shape of
``gpufleet.schema.registry.ModelVersionRecord``. A registration writes one item and nothing
else: the registry export is the control plane's (``gpufleet.registry``), never a GPU host's.
"""

from __future__ import annotations

import random
import time
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from gpufleet.aws import AwsClients
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.schema.registry import PENDING, artifact_key
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.dynamo import Record, from_item, is_condition_failure, now_iso, read_pages, to_item


def models_table(clients: AwsClients, runtime: TeamRuntime) -> Any:
    return clients.table(runtime.tables.models)


def query_versions(clients: AwsClients, runtime: TeamRuntime, model_name: str, **kwargs: Any) -> list[Record]:
    """``model_name``'s versions (a ``Limit`` in ``kwargs`` returns just the first page's)."""
    return read_pages(models_table(clients, runtime).query, limit_one_page="Limit" in kwargs,
                      KeyConditionExpression=Key("model_name").eq(model_name), ConsistentRead=True, **kwargs)


def latest_version(clients: AwsClients, runtime: TeamRuntime, model_name: str) -> int:
    top = query_versions(clients, runtime, model_name, ScanIndexForward=False, Limit=1)
    return int(top[0]["version"]) if top else 0


def find_by_job(clients: AwsClients, runtime: TeamRuntime, model_name: str, job_id: str,
                sha256: str) -> Record | None:
    """The version this job registered for the artifact ``sha256``, if any."""
    found = query_versions(clients, runtime, model_name,
                           FilterExpression=Attr("lineage.job_id").eq(job_id) & Attr("sha256").eq(sha256))
    return found[0] if found else None


def register_model_version(clients: AwsClients, runtime: TeamRuntime, model_name: str, *, sha256: str,
                           lineage: Record, max_tries: int = 20) -> Record:
    """Claim the next version of ``model_name`` for this job's artifact (or return the one it already has)."""
    job_id = str(lineage.get("job_id", ""))
    if job_id and (existing := find_by_job(clients, runtime, model_name, job_id, sha256)):
        return existing
    for attempt in range(max_tries):
        version = latest_version(clients, runtime, model_name) + 1
        record = {"model_name": model_name, "version": version, "status": PENDING, "sha256": sha256,
                  "artifact_uri": f"s3://{runtime.buckets.artifacts}/{artifact_key(model_name, version)}",
                  "lineage": lineage, "created_at": now_iso(), "updated_at": now_iso()}
        try:
            models_table(clients, runtime).put_item(Item=to_item(record),
                                              ConditionExpression="attribute_not_exists(model_name)")
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))   # another writer took it: next number
            continue
        return record
    raise RuntimeFailure("register model", f"{max_tries} writers beat this one to a version of {model_name}",
                         "retry the registration")


def get_model_version(clients: AwsClients, runtime: TeamRuntime, model_name: str, version: int) -> Record:
    item = models_table(clients, runtime).get_item(Key={"model_name": model_name, "version": version},
                                             ConsistentRead=True).get("Item")
    if not item:
        raise UserInputError([f"model {model_name}:{version}: no such version "
                              f"(list them with `gpufleet model list {model_name}`)"])
    return from_item(item)
