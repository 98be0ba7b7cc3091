"""The model registry: monotonic versions under concurrency, idempotent per job and artifact, approvals
pinned to the artifact in their own table, immutable artifacts, DR export."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gpufleet.errors import UserInputError
from gpufleet.registry import EXPORT_KEY, approve_model_version, list_model_versions, read_export, reject_model_version
from gpufleet.registry.export import scan_models
from gpufleet.registry.models import show_model_version
from gpufleet.store.approvals import get_decision
from gpufleet.store.artifacts import ArtifactExists, put_new_object
from gpufleet.store.models import get_model_version, register_model_version
from tests.training.conftest import Team


def _lineage(job_id: str) -> dict[str, object]:
    return {"job_id": job_id, "code_sha256": "c" * 64, "inputs": [], "hyperparameters": {"lr": 0.1},
            "metrics": {"test_accuracy": 0.97}}


def test_concurrent_registrations_get_distinct_consecutive_versions(team: Team) -> None:
    versions: list[int] = []
    lock = threading.Lock()

    def register(i: int) -> None:
        rec = register_model_version(team.clients, team.runtime, "race", sha256=f"{i:064d}", lineage=_lineage(f"j{i}"))
        with lock:
            versions.append(rec["version"])

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    records = list_model_versions(team.clients, team.runtime, "race")
    assert {r["lineage"]["job_id"] for r in records} == {f"j{i}" for i in range(6)}


def test_registering_the_same_job_and_artifact_twice_returns_its_first_version(team: Team) -> None:
    first = register_model_version(team.clients, team.runtime, "idem", sha256="a" * 64, lineage=_lineage("job-1"))
    again = register_model_version(team.clients, team.runtime, "idem", sha256="a" * 64, lineage=_lineage("job-1"))
    assert (first["version"], again["version"]) == (1, 1)
    assert len(list_model_versions(team.clients, team.runtime, "idem")) == 1
    retried = register_model_version(team.clients, team.runtime, "idem", sha256="b" * 64, lineage=_lineage("job-1"))
    assert retried["version"] == 2, "a retry with a different tarball gets a new version, never version 1's"
    assert get_model_version(team.clients, team.runtime, "idem", 1)["sha256"] == "a" * 64
    rec = get_model_version(team.clients, team.runtime, "idem", 1)
    assert rec["status"] == "PendingManualApproval"
    assert rec["artifact_uri"] == f"s3://{team.runtime.buckets.artifacts}/models/idem/1/model.tar.gz"
    assert rec["lineage"]["metrics"] == {"test_accuracy": 0.97}     # floats survive DynamoDB's Decimals


def test_approval_and_rejection_update_status_and_every_change_writes_a_new_export_version(team: Team) -> None:
    for job in ("j1", "j2"):
        register_model_version(team.clients, team.runtime, "dr", sha256="d" * 64, lineage=_lineage(job))
    exports = team.clients.s3.list_object_versions(Bucket=team.runtime.buckets.artifacts, Prefix=EXPORT_KEY)
    assert "Versions" not in exports     # a host's registration writes its one item: no scan, no export
    approve_model_version(team.clients, team.runtime, "dr", 1)
    rejected = reject_model_version(team.clients, team.runtime, "dr", 2, reason="accuracy regressed")
    assert (rejected["status"], rejected["status_reason"]) == ("Rejected", "accuracy regressed")
    export = read_export(team.clients, team.runtime)
    assert [(r["model_name"], r["version"], r["status"], r["schema"]) for r in export] == [
        ("dr", 1, "Approved", 1), ("dr", 2, "Rejected", 1)]
    versions = team.clients.s3.list_object_versions(Bucket=team.runtime.buckets.artifacts,
                                                    Prefix=EXPORT_KEY)["Versions"]
    assert len(versions) == 2      # one approval, one rejection
    oldest = min(versions, key=lambda v: v["LastModified"])
    assert len(read_export(team.clients, team.runtime, oldest["VersionId"])) >= 1


def test_unknown_model_version_is_a_one_line_user_error(team: Team) -> None:
    with pytest.raises(UserInputError, match=r"^model nope:3: no such version \(list them"):
        approve_model_version(team.clients, team.runtime, "nope", 3)
    with pytest.raises(UserInputError, match="no such version"):
        get_model_version(team.clients, team.runtime, "nope", 1)


def test_an_approval_pins_the_sha256_and_a_later_models_table_change_does_not_carry_it(team: Team) -> None:
    register_model_version(team.clients, team.runtime, "pin", sha256="a" * 64, lineage=_lineage("j1"))
    approve_model_version(team.clients, team.runtime, "pin", 1)
    decision = get_decision(team.clients, team.runtime, "pin", 1)
    assert decision is not None and (decision["status"], decision["sha256"]) == ("Approved", "a" * 64)
    # A host (which may write the models table) swaps the recorded artifact and claims an approval.
    team.clients.table(team.runtime.tables.models).update_item(
        Key={"model_name": "pin", "version": 1}, UpdateExpression="SET sha256 = :h, #s = :a",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":h": "f" * 64, ":a": "Approved"})
    assert [r["status"] for r in list_model_versions(team.clients, team.runtime, "pin")] == ["PendingManualApproval"]
    register_model_version(team.clients, team.runtime, "pin", sha256="b" * 64, lineage=_lineage("j2"))
    team.clients.table(team.runtime.tables.models).update_item(
        Key={"model_name": "pin", "version": 2}, UpdateExpression="SET #s = :a",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":a": "Approved"})
    assert show_model_version(team.clients, team.runtime, "pin", 2)["status"] == "PendingManualApproval"
    # What DR exports (and would restore as decisions) is the decided status, not the host's claim.
    assert [r["status"] for r in scan_models(team.clients, team.runtime)] == ["PendingManualApproval"] * 2


def test_an_artifact_once_written_is_never_overwritten(team: Team, tmp_path: Path) -> None:
    first, second = tmp_path / "first.tar.gz", tmp_path / "second.tar.gz"
    first.write_bytes(b"first artifact")
    second.write_bytes(b"second artifact")
    bucket, key = team.runtime.buckets.artifacts, "models/immutable/1/model.tar.gz"
    put_new_object(team.clients.s3, bucket, key, first, {"sha256": "1" * 64})
    with pytest.raises(ArtifactExists) as info:
        put_new_object(team.clients.s3, bucket, key, second, {"sha256": "2" * 64})
    assert info.value.sha256 == "1" * 64
    assert team.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"first artifact"


def test_an_export_whose_scan_went_stale_meanwhile_writes_the_table_as_it_stands(
        team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writer A scans, writer B registers a version and exports, then A puts its older scan last: A sees
    on its check that the table moved and writes again, so the published snapshot holds B's version."""
    from gpufleet.registry import export as export_module
    from gpufleet.registry.export import export_registry, scan_models

    table = team.clients.table(team.runtime.tables.models)
    table.put_item(Item={"model_name": "race", "version": 1, "status": "Approved"})
    calls = {"n": 0}

    def scan_then_b_registers(clients, runtime):  # type: ignore[no-untyped-def]
        items = scan_models(clients, runtime)
        calls["n"] += 1
        if calls["n"] == 1:   # B's registration and export land between A's scan and A's put
            table.put_item(Item={"model_name": "race", "version": 2, "status": "PendingManualApproval"})
            export_module.write_export(clients, runtime.buckets.artifacts, EXPORT_KEY, scan_models(clients, runtime))
        return items

    monkeypatch.setattr(export_module, "scan_models", scan_then_b_registers)
    export_registry(team.clients, team.runtime)
    versions = [r["version"] for r in read_export(team.clients, team.runtime) if r["model_name"] == "race"]
    assert versions == [1, 2]
