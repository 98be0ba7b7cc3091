"""Container jobs (a spec's ``image:``) under the real agent, with real podman + runc and an image built here
from the cached Debian rootfs: SageMaker's bring-your-own-container training contract end to end.

This machine has no GPU and no NVIDIA container toolkit, so no CDI spec: the containers get no GPU
devices here, and the GPU flags are checked against a CDI spec file written by the test.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpufleet.agent.training.container import gpu_args
from gpufleet.schema.container_settings import ContainerSettings
from gpufleet.store.models import get_model_version
from tests.support.containers import Podman, podman  # noqa: F401  (the fixture)
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
