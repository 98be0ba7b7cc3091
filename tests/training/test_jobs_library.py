"""The jobs library the CLI wraps: submit, list, status, cancel, logs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from gpufleet.errors import UserInputError
from gpufleet.jobs import cancel_job, job_logs, job_status, list_jobs, package_source, parse_job_spec, submit_job
from tests.training.conftest import SCRIPTS, Team


def test_packaged_source_is_reproducible_and_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "pkg" / "util.py").write_text("X = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"junk")
    first = package_source(tmp_path)
    time.sleep(1.1)
    (tmp_path / "train.py").touch()            # a new mtime, a later second: same bytes out
    assert package_source(tmp_path) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["pkg", "pkg/util.py", "train.py"]


def test_submit_uploads_code_records_queued_job_and_enqueues_one_message_per_host(team: Team) -> None:
    spec = parse_job_spec({"name": "ddp", "team": team.runtime.team, "entry_point": "sleep.py", "instance_count": 2})
    job_id = submit_job(team.clients, team.runtime, spec, SCRIPTS)
    job = job_status(team.clients, team.runtime, job_id)
    assert (job["status"], job["attempts"], job["name"]) == ("QUEUED", 0, "ddp")
    assert job["spec"]["source"] == f"s3://{team.runtime.buckets.artifacts}/code/{job_id}/source.tar.gz"
    assert job["spec"]["checkpoint_uri"] == f"s3://{team.runtime.buckets.checkpoints}/{job_id}/"
    obj = team.clients.s3.get_object(Bucket=team.runtime.buckets.artifacts, Key=f"code/{job_id}/source.tar.gz")
    body = obj["Body"].read()
    assert obj["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest() == hashlib.sha256(
        package_source(SCRIPTS)).hexdigest()
    msgs = team.clients.sqs.receive_message(QueueUrl=team.runtime.queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"]) for m in msgs] == [{"job_id": job_id}] * 2
    assert [j["job_id"] for j in list_jobs(team.clients, team.runtime, status="QUEUED")] == [job_id]


def test_submit_refuses_another_teams_spec_and_a_missing_entry_point(team: Team) -> None:
    other = parse_job_spec({"name": "x", "team": "someone-else", "entry_point": "sleep.py"})
    with pytest.raises(UserInputError, match="is not this runtime's team"):
        submit_job(team.clients, team.runtime, other, SCRIPTS)
    missing = parse_job_spec({"name": "x", "team": team.runtime.team, "entry_point": "nope.py"})
    with pytest.raises(UserInputError, match=r"no entry point nope\.py"):
        submit_job(team.clients, team.runtime, missing, SCRIPTS)
    assert list_jobs(team.clients, team.runtime) == []


def test_cancel_queued_job_then_cancel_again_is_a_user_error(team: Team) -> None:
    spec = parse_job_spec({"name": "c", "team": team.runtime.team, "entry_point": "sleep.py"})
    job_id = submit_job(team.clients, team.runtime, spec, SCRIPTS)
    assert cancel_job(team.clients, team.runtime, job_id)["status"] == "CANCELLED"
    with pytest.raises(UserInputError, match="already CANCELLED"):
        cancel_job(team.clients, team.runtime, job_id)
    with pytest.raises(UserInputError, match="no such job"):
        job_logs(team.clients, team.runtime, "missing-job")


def test_job_logs_returns_each_hosts_log(team: Team) -> None:
    spec = parse_job_spec({"name": "l", "team": team.runtime.team, "entry_point": "sleep.py"})
    job_id = submit_job(team.clients, team.runtime, spec, SCRIPTS)
    for host in ("i-1", "i-2"):
        team.clients.s3.put_object(Bucket=team.runtime.buckets.logs, Key=f"jobs/{job_id}/{host}.log",
                                   Body=f"hello from {host}\n".encode())
    assert job_logs(team.clients, team.runtime, job_id) == {"i-1": "hello from i-1\n", "i-2": "hello from i-2\n"}
