"""Container jobs (a spec's ``image:``) under the real agent, with real podman + runc and an image built here
from the cached Debian rootfs: SageMaker's bring-your-own-container training contract end to end.

This machine has no GPU and no NVIDIA container toolkit, so no CDI spec: the containers get no GPU
devices here, and the GPU flags are checked against a CDI spec file written by the test.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpufleet.agent.containers import gpu_args, local_settings, runtime_command
from gpufleet.agent.training.container import training_argv
from gpufleet.agent.training.isolation import JobUser, hand_over
from gpufleet.agent.training.jobcreds import CONTAINER_CREDENTIALS, JobCredentials, container_credentials_env
from gpufleet.agent.training.layout import JOB_DIRS, Layout
from gpufleet.aws import LOCAL_CREDENTIALS
from gpufleet.schema.container_settings import ContainerSettings
from gpufleet.schema.job_spec import parse_job_spec
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.models import get_model_version
from tests.support.aws import client
from tests.support.containers import PODMAN, Podman, podman  # noqa: F401  (the fixture)
from tests.training.conftest import AgentProc, Team, wait_for
from tests.training.fake_imds import FakeImds

IMAGES = Path(__file__).parent / "images"
StartAgent = Callable[..., AgentProc]
LOSS = [{"name": "loss", "regex": r"loss=([0-9.]+)"}]


@pytest.fixture(scope="module")
def train_image(podman: Podman) -> str:  # noqa: F811
    return podman.build(IMAGES / "train", "gpufleet-test-train")


def _channel(team: Team) -> str:
    team.clients.s3.put_object(Bucket=team.runtime.buckets.data, Key="nums/a.csv", Body=b"1,2\n3\n")
    team.clients.s3.put_object(Bucket=team.runtime.buckets.data, Key="nums/sub/b.csv", Body=b"4\n")
    return f"s3://{team.runtime.buckets.data}/nums/"


def _model_json(team: Team, record: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    bucket, key = str(record["artifact_uri"]).removeprefix("s3://").split("/", 1)
    tarball = team.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        assert tar.getnames() == ["model.json"]
        return tarball, json.loads(tar.extractfile("model.json").read())  # type: ignore[union-attr]


def test_container_job_succeeds_and_registers_its_model(team: Team, start_agent: StartAgent, podman: Podman,  # noqa: F811
                                                        train_image: str) -> None:
    start_agent("host-a", containers=podman.agent_settings())
    hps = {"steps": 3, "lr": 0.5, "mode": "fast"}
    job_id = team.submit(None, name="byoc", entry_point=None, image=train_image, hyperparameters=hps,
                         channels={"train": _channel(team)}, metric_definitions=LOSS, checkpoint_interval_s=1)
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=120)
    assert job["status"] == "SUCCEEDED", job.get("reason")
    assert job["model"] == "byoc:1" and job["metrics"]["loss"] == pytest.approx(1 / 3, abs=1e-3)

    record = get_model_version(team.clients, team.runtime, "byoc", 1)
    tarball, seen = _model_json(team, record)
    assert hashlib.sha256(tarball).hexdigest() == record["sha256"]
    assert record["lineage"]["hyperparameters"] == hps
    # SageMaker's contract inside the container: hyperparameters.json holds strings, SM_HPS the JSON values.
    assert seen["hyperparameters"] == {"steps": "3", "lr": "0.5", "mode": "fast"}
    assert seen["sm_hps"] == hps
    assert seen["sum"] == 10.0 and seen["channels"] == ["train"]
    assert (seen["channel_dir"], seen["model_dir"]) == ("/opt/ml/input/data/train", "/opt/ml/model")
    assert seen["resourceconfig"]["current_host"] == "algo-1" and seen["current_host"] == "algo-1"
    assert seen["inputdataconfig"] == {"train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}}
    assert seen["argv"] == [] and seen["input_writable"] is False   # `IMAGE train`; inputs mounted read-only
    ckpt = team.clients.s3.get_object(Bucket=team.runtime.buckets.checkpoints, Key=f"{job_id}/step.txt")
    assert ckpt["Body"].read() == b"3"
    assert not podman.run("ps", "--all", "--quiet", "--filter", "label=gpufleet.agent=host-a").stdout.strip()


def test_failed_container_reports_its_failure_file(team: Team, start_agent: StartAgent, podman: Podman,  # noqa: F811
                                                   train_image: str) -> None:
    start_agent("host-f", containers=podman.agent_settings())
    job_id = team.submit(None, name="byoc-bad", entry_point=None, image=train_image,
                         hyperparameters={"fail": True}, channels={"train": _channel(team)})
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=120)
    assert job["status"] == "FAILED"
    assert job["reason"] == ("the container exited with code 3; the train channel holds bad rows (fix the data)")


def test_missing_image_fails_the_job_with_the_runtime_line(team: Team, start_agent: StartAgent, podman: Podman) -> None:  # noqa: F811
    start_agent("host-m", containers=podman.agent_settings())
    job_id = team.submit(None, name="byoc-missing", entry_point=None, image="localhost/gpufleet-no-such-image:1")
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=60)
    assert job["reason"] == ("image: image localhost/gpufleet-no-such-image:1 is not on this host "
                             "and containers.pull is 'never'")


def test_spot_notice_stops_the_container_and_another_host_resumes_from_its_checkpoint(
        team: Team, start_agent: StartAgent, podman: Podman, train_image: str) -> None:  # noqa: F811
    """The spot notice comes from a fake IMDS: neither this machine nor moto serves spot/instance-action."""
    imds = FakeImds("host-s")
    try:
        a = start_agent("host-s", imds_endpoint=imds.endpoint, containers=podman.agent_settings())
        job_id = team.submit(None, name="byoc-spot", entry_point=None, image=train_image,
                             hyperparameters={"steps": 40, "step-seconds": 0.5}, channels={"train": _channel(team)},
                             checkpoint_interval_s=0.5)
        wait_for(lambda: "step=3 " in a.job_log(), 60, "three steps on host-s")
        start_agent("host-t", containers=podman.agent_settings())
        imds.announce_spot_interruption()
        job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=120)
    finally:
        imds.close()
    assert job["status"] == "SUCCEEDED", job.get("reason")
    assert (job["attempts"], job["claimed_by"]) == (2, "host-t")
    assert "stopping on SIGTERM after a checkpoint" in a.job_log()   # the container got its grace period
    _, seen = _model_json(team, get_model_version(team.clients, team.runtime, "byoc-spot", 1))
    assert int(str(seen["resumed_from"])) >= 3


def test_gpus_reach_the_container_through_the_cdi_spec(tmp_path: Path) -> None:
    """No GPU here: a CDI spec file stands in for the one nvidia-ctk writes on GPU hosts."""
    spec = tmp_path / "nvidia.yaml"
    podman_settings = ContainerSettings(command=["podman"], cdi_specs=[str(spec)])
    assert gpu_args(podman_settings) == []
    spec.write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    assert gpu_args(podman_settings) == ["--device", "nvidia.com/gpu=all"]
    assert gpu_args(ContainerSettings(command=["/usr/bin/docker"], cdi_specs=[str(spec)])) == ["--gpus", "all"]


# Inside the container, as an SDK would: run the config's credential_process, then again until the
# agent's refresh shows through the read-only mount (the folder is mounted, not the file: a rewrite is a
# new file, which a file mount would never show).
CONTAINER_SESSION_PROBE = """
import json, os, subprocess, time
line = [l for l in open(os.environ["AWS_CONFIG_FILE"]) if l.startswith("credential_process")][0]
def key():
    out = subprocess.run(line.split("=", 1)[1].split(), capture_output=True, text=True, check=True).stdout
    return json.loads(out)["AccessKeyId"]
first = later = key()
deadline = time.monotonic() + 120
while later == first and time.monotonic() < deadline:
    time.sleep(0.2)
    later = key()
print(json.dumps({"uid": os.getuid(), "first": first, "later": later,
                  "writable": os.access(os.path.dirname(os.environ["AWS_CONFIG_FILE"]), os.W_OK)}))
"""


def _with_job_role(team: Team) -> str:
    """Give the team a job role in the emulator, as the team stack does (the runtime names it)."""
    name = f"{team.runtime.platform}-{team.runtime.team}-job"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}
    arn = str(client(team.emu, "iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"]["Arn"])
    team.runtime = TeamRuntime.model_validate({**team.runtime.model_dump(), "job_role_arn": arn})
    return name


def test_a_container_job_holds_the_job_roles_session_and_none_of_the_hosts_credentials(
        team: Team, start_agent: StartAgent, podman: Podman, train_image: str) -> None:  # noqa: F811
    role = _with_job_role(team)
    agent = start_agent("host-c", containers=podman.agent_settings())
    job_id = team.submit(None, name="byoc-creds", entry_point=None, image=train_image,
                         channels={"train": _channel(team)})
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=120)
    assert job["status"] == "SUCCEEDED", job.get("reason")
    _, seen = _model_json(team, get_model_version(team.clients, team.runtime, "byoc-creds", 1))
    env, session = seen["aws_env"], seen["credentials"]
    # The same mechanism as a process job: a credential_process config, here on the read-only mount.
    assert env["AWS_CONFIG_FILE"] == f"{CONTAINER_CREDENTIALS}/container-config"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true" and env["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env), env
    assert session["AccessKeyId"] != LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"] and session["Expiration"]
    # Whose session it is, asked of STS with exactly what the container resolved.
    who = boto3.client("sts", endpoint_url=team.emu.endpoint, region_name=team.runtime.region,
                       aws_access_key_id=session["AccessKeyId"], aws_secret_access_key=session["SecretAccessKey"],
                       aws_session_token=session["SessionToken"]).get_caller_identity()["Arn"]
    assert who.endswith(f":assumed-role/{role}/job-{job_id}"), who
    assert not Layout(agent.work_root).credentials.exists(), "the session's files go when the job ends"


@pytest.mark.skipif(os.geteuid() != 0, reason="running a container as another user needs rootful podman")
def test_a_container_runs_as_the_job_user_and_reads_the_refreshed_session_through_its_mount(
        team: Team, podman: Podman, train_image: str) -> None:  # noqa: F811
    """The argv the agent builds, run by real podman as the job user (``nobody`` here, as in
    test_isolation.py): the session folder is the job user's alone (0700), mounted read-only, and the
    agent's refreshes reach the running container."""
    nobody = pwd.getpwnam("nobody")
    user = JobUser("nobody", nobody.pw_uid, nobody.pw_gid, isolated=True)
    _with_job_role(team)
    assert team.runtime.job_role_arn
    top = Path(tempfile.mkdtemp(prefix="gpufleet-container-user-"))
    top.chmod(0o755)
    layout = Layout(top / "ml")
    layout.reset()
    spec = parse_job_spec({"name": "n", "team": team.runtime.team, "image": train_image})
    creds = JobCredentials(client(team.emu, "sts"), team.runtime.job_role_arn, "job-u", {"Version": "2012-10-17",
                           "Statement": []}, layout.credentials, team.runtime.region, 900, owner=user.owner,
                           refresh_s=0.5)
    try:
        env = creds.start()
        hand_over([layout.root / d for d in JOB_DIRS], user)
        settings = ContainerSettings.model_validate(podman.agent_settings())
        argv = training_argv(settings, layout, spec, image=train_image, name="gpufleet-user-probe", agent="probe",
                             extra_env=container_credentials_env(env), slot=0, job_id="job-u", user=user,
                             credentials_dir=layout.credentials)
        assert argv[argv.index("--user") + 1] == f"{nobody.pw_uid}:{nobody.pw_gid}"
        done = podman.run(*argv[len(PODMAN):-1], "python3", "-c", CONTAINER_SESSION_PROBE, timeout_s=180)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
        assert (seen["uid"], seen["writable"]) == (nobody.pw_uid, False)
        # The agent rewrote the session while the container ran, and the container's SDK path saw it.
        assert seen["first"] != seen["later"] and seen["first"].startswith("ASIA"), seen
        assert creds.session_file.stat().st_mode & 0o077 == 0 and creds.session_file.stat().st_uid == nobody.pw_uid
    finally:
        creds.stop()
        shutil.rmtree(top)


def test_an_agent_that_is_not_root_drives_the_podman_service_through_its_socket(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hardened agent service runs as its own user, which cannot run rootless podman: it uses the root
    service's socket (playbooks' container_runtime role) when there is one."""
    sock_path = tmp_path / "podman.sock"
    settings = ContainerSettings(service_socket=str(sock_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert runtime_command(settings) == ["podman"]   # no service socket: podman on its own
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        assert runtime_command(settings) == ["podman", "--remote", "--url", f"unix://{sock_path}"]
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        assert runtime_command(settings) == ["podman"]   # root runs podman itself
        assert runtime_command(ContainerSettings(command=["docker"], service_socket=str(sock_path))) == ["docker"]


def test_local_mode_pulls_no_image() -> None:
    """moto's ECR serves no registry: local agents run the machine's own images (a listed local difference)."""
    assert local_settings(ContainerSettings(pull="always")).pull == "never"
