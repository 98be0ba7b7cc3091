"""Job code holds the team's job role, never the host's: the training agent assumes the job role for each
job and hands the job a credential_process config; with the emulator's IAM enforcement switched on (a
dedicated moto server, so no other test is affected), a job script using those credentials cannot
approve its own model or overwrite a registered artifact, and the registry is left unchanged, while it
can still write its own checkpoints.

What moto judges (../shared/ENVIRONMENT.md "IAM in moto"): a role's identity policies, per resource for
S3 and per action for DynamoDB; it ignores session policies. So the S3 and DynamoDB denials below come
from the job role's own policy (the same grants the team stack gives it: tests/stacks check that), and
the per-job narrowing is checked on the session policy document itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.agent.training.jobcreds import JobCredentials, job_environment, session_policy
from gpufleet.local import emulator
from gpufleet.local.emulator import Emulator
from gpufleet.schema.job_spec import parse_job_spec
from gpufleet.schema.runtime import TeamRuntime
from tests.support.aws import client, create_team_resources

JOB_ID = "job-iam-1"
ARTIFACT_KEY = "models/digits/1/model.tar.gz"
ORIGINAL = b"the registered artifact"

JOB_SCRIPT = r'''
import json, sys
import boto3
from botocore.exceptions import ClientError

tables, buckets, job_id = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
attempts = {
    "approve_own_model": lambda: ddb.put_item(TableName=tables["approvals"], Item={
        "model_name": {"S": "digits"}, "version": {"N": "1"}, "status": {"S": "Approved"},
        "sha256": {"S": "0" * 64}, "artifact_uri": {"S": "s3://x/y"}}),
    "mark_approved_in_models": lambda: ddb.update_item(
        TableName=tables["models"], Key={"model_name": {"S": "digits"}, "version": {"N": "1"}},
        UpdateExpression="SET #s = :a", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":a": {"S": "Approved"}}),
    "overwrite_artifact": lambda: s3.put_object(Bucket=buckets["artifacts"], Key="models/digits/1/model.tar.gz",
                                                Body=b"evil"),
    "own_checkpoint": lambda: s3.put_object(Bucket=buckets["checkpoints"], Key=f"{job_id}/step-1.pt", Body=b"ok"),
    "read_input": lambda: s3.get_object(Bucket=buckets["data"], Key="digits/train.csv")["Body"].read(),
}
results = {}
for name, attempt in attempts.items():
    try:
        attempt()
        results[name] = "allowed"
    except ClientError as exc:
        results[name] = "denied" if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403 else repr(exc)
results["identity"] = boto3.client("sts").get_caller_identity()["Arn"]
print(json.dumps(results))
'''


def _set_enforcement(emu: Emulator, on: bool) -> None:
    # A plain-text body: with urllib's default form content type the server sees no body at all.
    request = urllib.request.Request(f"{emu.endpoint}/moto-api/reset-auth", data=b"0" if on else b"inf",
                                     method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def _user_keys(iam: Any, name: str, policy: dict[str, Any]) -> dict[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def _job_role_policy(rt: TeamRuntime) -> dict[str, Any]:
    """The team stack's job-role grants (gpufleet/stacks/team_access.py), with the emulator's bucket names."""
    b = rt.buckets
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{b.data}", f"arn:aws:s3:::{b.data}/*"]},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{b.checkpoints}", f"arn:aws:s3:::{b.checkpoints}/*"]},
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"arn:aws:s3:::{b.logs}/jobs/*"]}]}


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, TeamRuntime, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("iam-emulator")
    emu = emulator.start(root)
    try:
        rt = create_team_resources(emu, platform="iam", team="alpha")
        iam = client(emu, "iam")
        role_arn = iam.create_role(RoleName="iam-alpha-job", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}),
        )["Role"]["Arn"]
        iam.put_role_policy(RoleName="iam-alpha-job", PolicyName="least-privilege",
                            PolicyDocument=json.dumps(_job_role_policy(rt)))
        keys = {"admin": _user_keys(iam, "admin", {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
                # Stands in for the training host role: moto accepts only IAM users' keys or its STS creds.
                "host": _user_keys(iam, "host", {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}]})}
        s3, ddb = client(emu, "s3"), client(emu, "dynamodb")
        s3.put_object(Bucket=rt.buckets.artifacts, Key=ARTIFACT_KEY, Body=ORIGINAL)
        s3.put_object(Bucket=rt.buckets.data, Key="digits/train.csv", Body=b"1,2,3\n")
        ddb.put_item(TableName=rt.tables.models, Item={
            "model_name": {"S": "digits"}, "version": {"N": "1"}, "status": {"S": "PendingManualApproval"},
            "sha256": {"S": "a" * 64}, "artifact_uri": {"S": f"s3://{rt.buckets.artifacts}/{ARTIFACT_KEY}"}})
        yield emu, TeamRuntime.model_validate({**rt.model_dump(), "job_role_arn": role_arn}), keys
    finally:
        emulator.stop(root)


def test_job_code_cannot_approve_its_model_or_overwrite_an_artifact_and_the_registry_is_unchanged(
        enforced: tuple[Emulator, TeamRuntime, dict[str, Any]], tmp_path: Path) -> None:
    emu, rt, keys = enforced
    spec = parse_job_spec({"name": "digits", "team": "alpha", "entry_point": "train.py",
                           "channels": {"train": f"s3://{rt.buckets.data}/digits/"}})
    sts = boto3.client("sts", endpoint_url=emu.endpoint, region_name=rt.region, **keys["host"])
    assert rt.job_role_arn
    creds = JobCredentials(sts, rt.job_role_arn, JOB_ID, session_policy(rt, spec, JOB_ID), tmp_path / "creds",
                           rt.region, duration_s=900)
    # The agent's own environment carries the host's keys: the job must not inherit them.
    agent_env = {**os.environ, "AWS_ACCESS_KEY_ID": keys["host"]["aws_access_key_id"],
                 "AWS_SECRET_ACCESS_KEY": keys["host"]["aws_secret_access_key"]}
    # moto 5.2.5 refuses AssumeRole under enforcement whatever the caller's policy (measured, even with
    # sts:*), so the agent issues the session first; everything the job does runs with enforcement on.
    env = {**job_environment(agent_env, creds.start()), "AWS_ENDPOINT_URL": emu.endpoint}
    _set_enforcement(emu, True)
    try:
        assert "AWS_ACCESS_KEY_ID" not in env and (tmp_path / "creds" / "session.json").stat().st_mode & 0o077 == 0
        done = subprocess.run([sys.executable, "-c", JOB_SCRIPT, json.dumps(rt.tables.model_dump()),
                               json.dumps(rt.buckets.model_dump()), JOB_ID],
                              env=env, capture_output=True, text=True, timeout=120)
        admin = {"endpoint_url": emu.endpoint, "region_name": rt.region, **keys["admin"]}
        ddb, s3 = boto3.client("dynamodb", **admin), boto3.client("s3", **admin)
        approvals = ddb.scan(TableName=rt.tables.approvals)["Items"]
        model = ddb.get_item(TableName=rt.tables.models, Key={"model_name": {"S": "digits"}, "version": {"N": "1"}})
        artifact = s3.get_object(Bucket=rt.buckets.artifacts, Key=ARTIFACT_KEY)["Body"].read()
    finally:
        creds.stop()
        _set_enforcement(emu, False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "creds").exists(), "the session is deleted when the job ends"
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["identity"].endswith(f":assumed-role/iam-alpha-job/job-{JOB_ID}")
    assert {k: results[k] for k in ("approve_own_model", "mark_approved_in_models", "overwrite_artifact")} == {
        "approve_own_model": "denied", "mark_approved_in_models": "denied", "overwrite_artifact": "denied"}
    assert (results["own_checkpoint"], results["read_input"]) == ("allowed", "allowed")

    assert approvals == []
    assert model["Item"]["status"]["S"] == "PendingManualApproval" and model["Item"]["sha256"]["S"] == "a" * 64
    assert artifact == ORIGINAL


def test_the_session_policy_narrows_a_job_to_its_channels_checkpoints_and_logs() -> None:
    rt = TeamRuntime.model_validate({
        "platform": "p", "team": "t", "region": "us-east-1", "queue_url": "q", "dlq_url": "d",
        "buckets": {b: f"p-t-{b}" for b in ("data", "artifacts", "checkpoints", "capture", "logs")},
        "tables": {t: f"p-t-{t}" for t in ("jobs", "models", "endpoints", "approvals")},
        "training": {"asg": "a"}})
    spec = parse_job_spec({"name": "n", "team": "t", "entry_point": "train.py",
                           "channels": {"train": "s3://p-t-data/digits/train/"}})
    statements = {s["Sid"]: s for s in session_policy(rt, spec, "job-7")["Statement"]}
    assert statements["Channels"]["Resource"] == ["arn:aws:s3:::p-t-data/digits/train/*"]
    assert statements["Checkpoints"]["Resource"] == ["arn:aws:s3:::p-t-checkpoints/job-7/*"]
    assert statements["Logs"]["Resource"] == ["arn:aws:s3:::p-t-logs/jobs/job-7/*"]
    actions = {a for s in statements.values() for a in s["Action"]}
    assert not {a for a in actions if a.split(":")[0] in ("dynamodb", "sqs", "sts", "iam")}
    assert all("p-t-artifacts" not in r for s in statements.values() for r in s["Resource"])


def test_the_agent_refreshes_the_session_and_the_job_sdk_picks_up_the_new_one(
        moto_server: Emulator, tmp_path: Path) -> None:
    rt = create_team_resources(moto_server, platform="refresh", team="alpha")
    role_arn = client(moto_server, "iam").create_role(RoleName="refresh-alpha-job", AssumeRolePolicyDocument="{}")[
        "Role"]["Arn"]
    spec = parse_job_spec({"name": "n", "team": "alpha", "entry_point": "train.py"})
    creds = JobCredentials(client(moto_server, "sts"), role_arn, "job-r", session_policy(rt, spec, "job-r"),
                           tmp_path / "creds", rt.region, duration_s=900, refresh_s=0.3)
    env = creds.start()
    session = tmp_path / "creds" / "session.json"
    try:
        first = json.loads(session.read_text())["AccessKeyId"]
        deadline = time.monotonic() + 20
        while json.loads(session.read_text())["AccessKeyId"] == first:
            assert time.monotonic() < deadline, "the session was not refreshed"
            time.sleep(0.1)
        creds.refresh_s = 3600      # hold still after the refresh in flight, so the file and the SDK can agree
        time.sleep(2)
        current = json.loads(session.read_text())["AccessKeyId"]
        assert _credential_process_key(env) == current != first
    finally:
        creds.stop()


def _credential_process_key(env: dict[str, str]) -> str:
    """The access key a fresh SDK session resolves with the job's environment."""
    done = subprocess.run([sys.executable, "-c", "import boto3; print(boto3.Session().get_credentials().access_key)"],
                          env={**job_environment(dict(os.environ), env)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]
    return done.stdout.strip()
