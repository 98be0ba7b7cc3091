"""The registry record: one item of a team's models table, and where its artifact lives; and the
operator's decision on it, one item of the approvals table.

Hosts write versions (``gpufleet.store.models``); only the operator writes decisions
(``gpufleet.store.approvals``), each pinning the artifact's URI and sha256 it judged. Serving loads
exactly the pinned artifact of an Approved decision, whatever the models table says since.
"""

from __future__ import annotations

from typing import Any, TypedDict

from gpufleet.schema import ModelStatus

PENDING: ModelStatus = "PendingManualApproval"


class Lineage(TypedDict, total=False):
    source: str                        # "external": registered with `gpufleet model register`, not trained here
    artifact: str                      # external: where the artifact was registered from (path or s3:// URI)
    artifact_sha256: str               # external: of the artifact as given (before any --code was packed in)
    description: str
    packaged_from: str                 # `gpufleet model package`: the NAME:VERSION whose model this repacks
    training_job_id: str               # packaged: the job that trained the model it repacks
    inference_code_sha256: str         # packaged or registered with --code: of the code/ folder's files
    job_id: str                        # the training job (absent for a model brought from elsewhere)
    code_sha256: str                   # the job's source tarball
    inputs: list[dict[str, str]]       # [{uri, version_id or etag}]
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]


class ModelVersionRecord(TypedDict, total=False):
    model_name: str                    # hash key
    version: int                       # range key, monotonic per model name
    status: ModelStatus
    sha256: str                        # of model.tar.gz
    artifact_uri: str                  # s3://<artifacts>/models/<model>/<version>/model.tar.gz
    lineage: Lineage
    status_reason: str                 # why it was rejected
    created_at: str
    updated_at: str


class ApprovalRecord(TypedDict, total=False):
    model_name: str                    # hash key
    version: int                       # range key
    status: ModelStatus                # Approved or Rejected (no item: PendingManualApproval)
    sha256: str                        # the artifact the operator judged
    artifact_uri: str
    reason: str                        # why it was rejected
    decided_at: str


def artifact_key(model_name: str, version: int) -> str:
    """The artifact's key in the team's artifacts bucket."""
    return f"models/{model_name}/{version}/model.tar.gz"
