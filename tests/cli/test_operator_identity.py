"""On real AWS a team command runs as the team's operator role, or stops before its first call.

The team's buckets serve objects to its own roles only (their policy denies everyone else, admins too), and
the audit judges the CLI's calls as the operator role, so credentials of any other principal would fail
part-way (a job's code upload refused) or be judged as someone they are not. The checks run against the
session's moto server, reached through ``AWS_ENDPOINT_URL`` as a real-AWS target would reach AWS: moto's STS
answers ``GetCallerIdentity`` with the assumed role of the credentials, as AWS does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.aws import AwsClients
from gpufleet.config import parse_config
from gpufleet.dr.rebuild import rebuild, require_restorer
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.local.differences import LOCAL_MODE_DIFFERENCES
from gpufleet.local.emulator import Emulator
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.target import aws_target
from gpufleet.teams import team_context
from gpufleet.workspace import teams_dir
from tests.support.aws import client, create_team_resources

ACCOUNT, REGION, DR_REGION = "123456789012", "us-east-1", "us-west-2"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})


def _runtime(platform: str, team: str, region: str) -> TeamRuntime:
    names = {b: f"{platform}-{team}-{b}" for b in ("data", "artifacts", "checkpoints", "capture", "logs")}
    return TeamRuntime.model_validate({
        "platform": platform, "team": team, "region": region, "buckets": names,
        "queue_url": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{platform}-{team}-jobs",
        "dlq_url": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{platform}-{team}-jobs-dlq",
        "tables": {t: f"{platform}-{team}-{t}" for t in ("jobs", "models", "endpoints", "approvals")},
        "training": {"asg": f"{platform}-{team}-training"}})


def _workspace(tmp_path: Path, platform: str, team: str, rebuilt_region: str | None = None) -> Path:
    root = tmp_path / ".gpufleet"
    folder = teams_dir(root, rebuilt_region)
    folder.mkdir(parents=True)
    (folder / f"{team}.json").write_text(_runtime(platform, team, rebuilt_region or REGION).to_json())
    return root


@pytest.fixture
def real_aws_target(moto_server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The aws target, with the default credential chain and endpoint resolution pointed at moto."""
    monkeypatch.setenv("GPUFLEET_TARGET", "aws")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("GPUFLEET_REGION", raising=False)
    return moto_server


def _assume(emu: Emulator, role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials of ``role`` in the environment, as a profile with ``role_arn`` would give them."""
    iam: Any = client(emu, "iam")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)
    creds = client(emu, "sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
                                           RoleSessionName="me")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])


def test_credentials_of_another_principal_stop_the_command_with_the_role_to_assume(
        real_aws_target: Emulator, tmp_path: Path) -> None:
    root = _workspace(tmp_path, "idc1", "ml")
    caller = boto3.client("sts", region_name=REGION).get_caller_identity()["Arn"]   # moto's default user
    with pytest.raises(UserInputError) as error:
        team_context("ml", root)
    (line,) = error.value.problems
    assert line.startswith(f"credentials: you are {caller}, but team ml's commands run as its operator role "
                           f"arn:aws:iam::{ACCOUNT}:role/idc1-ml-operator")
    assert f"role_arn = arn:aws:iam::{ACCOUNT}:role/idc1-ml-operator" in line and "AWS_PROFILE" in line


def test_the_team_operator_role_passes_and_an_admin_role_does_not(
        real_aws_target: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _workspace(tmp_path, "idc2", "ml")
    _assume(real_aws_target, "idc2-ml-operator", monkeypatch)
    ctx = team_context("ml", root)
    assert (ctx.runtime.team, ctx.local) == ("ml", False)
    _assume(real_aws_target, "idc2-admin", monkeypatch)   # an administrator: the team's buckets deny it
    with pytest.raises(UserInputError, match=r"you are arn:aws:sts::\d+:assumed-role/idc2-admin/me, but team ml"):
        team_context("ml", root)


def test_a_dr_rebuild_expects_its_own_operator_role_whose_name_carries_the_region(
        real_aws_target: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _workspace(tmp_path, "idc3", "ml", rebuilt_region=DR_REGION)
    monkeypatch.setenv("GPUFLEET_REGION", DR_REGION)
    _assume(real_aws_target, "idc3-ml-operator", monkeypatch)   # the lost region's role
    with pytest.raises(UserInputError, match=f"role/idc3-ml-operator-{DR_REGION} "):
        team_context("ml", root)
    _assume(real_aws_target, f"idc3-ml-operator-{DR_REGION}", monkeypatch)
    assert team_context("ml", root).rebuilt_region == DR_REGION


def test_calling_an_endpoint_url_needs_no_operator_role_and_local_mode_asks_nothing(
        real_aws_target: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _workspace(tmp_path, "idc4", "ml")
    assert team_context("ml", root, as_operator=False).runtime.team == "ml"
    monkeypatch.setenv("GPUFLEET_TARGET", "local")
    with pytest.raises(Exception, match="local cloud: it is not running"):   # the local check, not the role
        team_context("ml", root)
    assert any("operator role" in feature for feature, _ in LOCAL_MODE_DIFFERENCES)


def test_a_dr_rebuild_on_real_aws_restores_a_team_only_as_its_rebuilt_operator_role(
        real_aws_target: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The replica bucket the rebuilt team adopted serves its roles only: an administrator who applied the
    stacks is told to restore as the team's role, and nothing is restored until then."""
    cfg = parse_config({"platform": {"name": "idc5", "region": REGION, "dr_region": DR_REGION},
                        "teams": [{"name": "ml", "training": {"instance_types": ["g5.xlarge"], "max_instances": 1}}]},
                       "test config")
    rebuilt = create_team_resources(real_aws_target, "idc5", "ml", region=DR_REGION)   # as its stacks made them
    root = tmp_path / ".gpufleet"
    teams_dir(root, DR_REGION).mkdir(parents=True)
    (teams_dir(root, DR_REGION) / "ml.json").write_text(rebuilt.to_json())
    target = aws_target(root / "state")

    with pytest.raises(RuntimeFailure) as failure:
        rebuild(cfg, target, root, tmp_path / "out", DR_REGION, ["ml"], say=lambda _: None, restore_only=True)
    assert failure.value.message.startswith("team(s) ml were not restored: credentials: you are ")
    assert f"role/idc5-ml-operator-{DR_REGION} " in failure.value.message
    assert failure.value.next_action == (f"from this workspace, per team: as idc5-ml-operator-{DR_REGION}: "
                                         f"AWS_PROFILE=<its profile> gpufleet dr rebuild --region {DR_REGION} "
                                         "--team ml --restore-only")
    clients = AwsClients.create(DR_REGION)
    with pytest.raises(RuntimeFailure, match=f"the stacks are applied in {DR_REGION}, but team"):
        require_restorer(clients, {"ml": rebuilt}, DR_REGION, stacks_applied=True)

    _assume(real_aws_target, f"idc5-ml-operator-{DR_REGION}", monkeypatch)
    result = rebuild(cfg, target, root, tmp_path / "out", DR_REGION, ["ml"], say=lambda _: None, restore_only=True)
    (report,) = result.reports
    assert (report.team, report.complete, result.stacks) == ("ml", True, [])   # nothing exported yet: nothing to do
