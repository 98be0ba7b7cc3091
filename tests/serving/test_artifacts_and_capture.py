"""Artifact fetching (sha256, unsafe tarballs), data capture's bounded queue, and the serving options."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gpufleet.agent.serving.artifacts import ArtifactRejected, fetch_model
from gpufleet.agent.serving.capture import DataCapture
from gpufleet.errors import UserInputError
from gpufleet.schema.agent_config import load_agent_config
from tests.serving.conftest import Constant, Team, pack, scripted_model_dir


def _upload(team: Team, key: str, body: bytes) -> str:
    team.client("s3").put_object(Bucket=team.runtime.buckets.artifacts, Key=key, Body=body)
    return f"s3://{team.runtime.buckets.artifacts}/{key}"


def test_fetch_verifies_sha256_and_unpacks_the_model_dir(team: Team, tmp_path: Path) -> None:
    tarball = pack(scripted_model_dir(tmp_path / "m", Constant(1.0)))
    uri = _upload(team, "models/a/1/model.tar.gz", tarball)
    dest = fetch_model(team.client("s3"), uri, hashlib.sha256(tarball).hexdigest(), tmp_path / "out")
    assert (dest / "model.pt").is_file()
    with pytest.raises(ArtifactRejected, match="does not match the registry's"):
        fetch_model(team.client("s3"), uri, "0" * 64, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_tarball_escaping_the_model_dir_is_refused(team: Team, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tarball = buffer.getvalue()
    uri = _upload(team, "models/evil/1/model.tar.gz", tarball)
    with pytest.raises(ArtifactRejected, match=r"not a valid model\.tar\.gz"):
        fetch_model(team.client("s3"), uri, hashlib.sha256(tarball).hexdigest(), tmp_path / "a" / "b" / "out")
    assert not list(tmp_path.rglob("escaped.txt"))


class StalledS3:
    """An S3 client whose put_object hangs until released: S3 being slow cannot be made in moto."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.bodies: list[bytes] = []

    def put_object(self, **kwargs: Any) -> None:
        self.release.wait(30)
        self.bodies.append(kwargs["Body"])


class _Model:
    name, version = "m", 1


def test_capture_drops_and_counts_when_s3_stalls_and_never_blocks_serving() -> None:
    s3 = StalledS3()
    capture = DataCapture(s3, "bucket", "ep", "blue", percent=100, queue_size=3, flush_interval_s=0.01,
                          max_records=1)
    start = time.perf_counter()
    accepted = [capture.offer(_Model(), f"r{i}", b"[[1]]", "application/json", b"[[2]]", "application/json")
                for i in range(50)]
    assert time.perf_counter() - start < 5     # 50 offers against a hung S3 did not wait on it
    assert capture.dropped == accepted.count(False) >= 45
    s3.release.set()
    capture.close()
    written = [json.loads(line) for body in s3.bodies for line in body.splitlines()]
    assert len(written) == accepted.count(True)
    assert written[0]["captureData"]["endpointInput"] == {
        "observedContentType": "application/json", "mode": "INPUT", "data": "[[1]]", "encoding": "JSON"}


def test_bad_serving_options_are_one_line_errors(tmp_path: Path, team: Team) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"role": "serving", "team": json.loads(team.runtime.to_json()), "endpoint": "e",
                                "variant": "blue", "serving": {"max_batch_size": 0, "capture_percent": 150}}))
    with pytest.raises(UserInputError) as err:
        load_agent_config(path)
    assert [p.split(":")[1].strip() for p in err.value.problems] == ["serving.max_batch_size",
                                                                      "serving.capture_percent"]
