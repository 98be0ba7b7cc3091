"""Serving loads only what the operator approved, byte for byte: a version with no approval, or one whose
models-table record and artifact a host rewrote after the approval, is refused and the approved model
keeps serving (the serving agent as a real process against a real moto server)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx

from tests.serving.conftest import Constant, Team, pack, scripted_model_dir


def _wait_for_refusals(agent: object, count: int) -> None:
    deadline = time.monotonic() + 20
    while f"gpufleet_model_load_failures_total {count}" not in httpx.get(f"{agent.url}/metrics").text:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, agent.log.read_text()[-2000:]  # type: ignore[attr-defined]
        time.sleep(0.1)


def test_unapproved_and_rewritten_versions_are_refused_and_the_approved_one_keeps_serving(
        team: Team, start_agent, tmp_path: Path) -> None:
    team.publish_model("pinned", 1, pack(scripted_model_dir(tmp_path / "v1", Constant(1.0))))
    # v2: registered by a host, never approved (its models record even claims Approved).
    unapproved = pack(scripted_model_dir(tmp_path / "v2", Constant(2.0)))
    key2 = "models/pinned/2/model.tar.gz"
    team.client("s3").put_object(Bucket=team.runtime.buckets.artifacts, Key=key2, Body=unapproved)
    team.client("dynamodb").put_item(TableName=team.runtime.tables.models, Item={
        "model_name": {"S": "pinned"}, "version": {"N": "2"}, "status": {"S": "Approved"},
        "artifact_uri": {"S": f"s3://{team.runtime.buckets.artifacts}/{key2}"},
        "sha256": {"S": hashlib.sha256(unapproved).hexdigest()}})
    # v3: approved, then a host swaps the artifact and rewrites the models record's sha256 to match.
    uri3 = team.publish_model("pinned", 3, pack(scripted_model_dir(tmp_path / "v3", Constant(3.0))))
    evil = pack(scripted_model_dir(tmp_path / "evil", Constant(666.0)))
    team.client("s3").put_object(Bucket=team.runtime.buckets.artifacts, Key=uri3.split("/", 3)[3], Body=evil)
    team.client("dynamodb").update_item(
        TableName=team.runtime.tables.models, Key={"model_name": {"S": "pinned"}, "version": {"N": "3"}},
        UpdateExpression="SET sha256 = :h", ExpressionAttributeValues={":h": {"S": hashlib.sha256(evil).hexdigest()}})

    team.point_endpoint("pinned", "blue", "pinned", 1)
    agent = start_agent("pinned")
    agent.wait_ready()
    team.point_endpoint("pinned", "blue", "pinned", 2)
    _wait_for_refusals(agent, 1)
    team.point_endpoint("pinned", "blue", "pinned", 3)
    _wait_for_refusals(agent, 2)

    r = httpx.post(f"{agent.url}/invocations", json=[[0.0]])
    assert r.json() == [[1.0]] and r.headers["x-gpufleet-model"] == "pinned:1"
    reasons = [e["reason"] for e in agent.events() if e["event"] == "model_refused"]
    assert "pinned:2 is not approved" in reasons[0]
    assert "does not match the registry's" in reasons[1]
