"""A real training script runs to completion under the agent: model registered with its lineage."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from gpufleet.registry import EXPORT_KEY, approve_model_version, read_export
from gpufleet.store.models import get_model_version
from tests.training.conftest import DIGITS, SCRIPTS, Team, wait_for

METRICS = [{"name": "test_accuracy", "regex": r"test_accuracy=([0-9.]+)"},
           {"name": "train_loss", "regex": r"train_loss=([0-9.]+)"}]


def _upload_digits(team: Team) -> str:
    x, y = load_digits(return_X_y=True)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    team.clients.s3.put_object(Bucket=team.runtime.buckets.data, Key="digits/v1/digits.npz", Body=buf.getvalue())
    return f"s3://{team.runtime.buckets.data}/digits/v1/"


def test_digits_job_runs_to_completion_and_registers_version_1_with_lineage(team: Team, start_agent) -> None:
    channel = _upload_digits(team)
    start_agent("host-a")
    job_id = team.submit(DIGITS, name="digits", hyperparameters={"epochs": 6, "lr": 0.1, "batch-size": 64},
                         channels={"train": channel}, metric_definitions=METRICS, checkpoint_interval_s=1)
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=180)
    assert job["status"] == "SUCCEEDED", job.get("reason")
    assert job["model"] == "digits:1" and job["attempts"] == 1
    assert job["metrics"]["test_accuracy"] > 0.85

    record = get_model_version(team.clients, team.runtime, "digits", 1)
    assert record["status"] == "PendingManualApproval"
    bucket, key = record["artifact_uri"].removeprefix("s3://").split("/", 1)
    assert (bucket, key) == (team.runtime.buckets.artifacts, "models/digits/1/model.tar.gz")
    tarball = team.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(tarball).hexdigest() == record["sha256"]
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        assert tar.getnames() == ["model.pt2"]           # SM_MODEL_DIR's contents at the tar root
        model = torch.export.load(io.BytesIO(tar.extractfile("model.pt2").read())).module()  # type: ignore[union-attr]
    x, y = load_digits(return_X_y=True)
    accuracy = float((model(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy() == y).mean())
    assert accuracy > 0.85

    lineage = record["lineage"]
    code = team.clients.s3.get_object(Bucket=team.runtime.buckets.artifacts,
                                      Key=f"code/{job_id}/source.tar.gz")["Body"].read()
    assert lineage["job_id"] == job_id
    assert lineage["code_sha256"] == hashlib.sha256(code).hexdigest()
    assert lineage["hyperparameters"] == {"epochs": 6, "lr": 0.1, "batch-size": 64}
    assert lineage["metrics"] == job["metrics"]
    [ref] = lineage["inputs"]
    head = team.clients.s3.head_object(Bucket=team.runtime.buckets.data, Key="digits/v1/digits.npz")
    assert ref == {"uri": f"{channel}digits.npz", "version_id": head["VersionId"]}

    exports = team.clients.s3.list_object_versions(Bucket=team.runtime.buckets.artifacts, Prefix=EXPORT_KEY)
    assert "Versions" not in exports      # the host registered one item; exporting is the control plane's
    approve_model_version(team.clients, team.runtime, "digits", 1)
    export = read_export(team.clients, team.runtime)
    assert [(r["model_name"], r["version"], r["sha256"]) for r in export] == [("digits", 1, record["sha256"])]
    log = team.clients.s3.get_object(Bucket=team.runtime.buckets.logs, Key=f"jobs/{job_id}/host-a.log")
    assert "test_accuracy=" in log["Body"].read().decode()
    stats = team.clients.cloudwatch.list_metrics(Namespace="gpufleet", MetricName="test_accuracy")["Metrics"]
    assert {"Name": "Job", "Value": job_id} in [d for m in stats for d in m["Dimensions"]]


def test_sagemaker_contract_script_runs_unchanged(team: Team, start_agent, tmp_path: Path) -> None:
    """``sm_contract.py`` uses only what SageMaker gives a script; it records what it saw in its model."""
    team.clients.s3.put_object(Bucket=team.runtime.buckets.data, Key="c/a.csv", Body=b"1,2\n")
    team.clients.s3.put_object(Bucket=team.runtime.buckets.data, Key="c/sub/b.csv", Body=b"3,4\n")
    start_agent("host-c")
    job_id = team.submit(SCRIPTS, name="contract", entry_point="sm_contract.py",
                         hyperparameters={"epochs": 2, "learning-rate": 0.5, "optimizer": "adam", "amp": True},
                         channels={"training": f"s3://{team.runtime.buckets.data}/c/"})
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=120)
    assert job["status"] == "SUCCEEDED", job.get("reason")
    record = get_model_version(team.clients, team.runtime, "contract", 1)
    tarball = team.clients.s3.get_object(Bucket=team.runtime.buckets.artifacts,
                                         Key="models/contract/1/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        seen = json.loads(tar.extractfile("seen.json").read())  # type: ignore[union-attr]
    assert seen["args"] == {"epochs": 2, "learning_rate": 0.5, "optimizer": "adam", "amp": "true"}
    assert seen["hps"] == {"epochs": 2, "learning-rate": 0.5, "optimizer": "adam", "amp": True}
    assert seen["channels"] == ["training"]
    assert seen["channel_files"] == ["a.csv", "sub/b.csv"]
    assert seen["current_host"] == "algo-1" and seen["hosts"] == ["algo-1"]
    assert seen["num_gpus"] == 0
    assert seen["hyperparameters_json"] == {"epochs": "2", "learning-rate": "0.5", "optimizer": "adam",
                                            "amp": "true"}
    assert seen["sm_hp_epochs"] == "2"
    # One process on one host: the agent runs the script itself, with the variables torchrun would set.
    assert "gpufleet.agent" in seen["parent"] and "torch.distributed.run" not in seen["parent"]
    torch_env = seen["torch_env"]
    assert int(torch_env.pop("MASTER_PORT")) > 0
    assert torch_env == {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                         "MASTER_ADDR": "127.0.0.1", "TORCHELASTIC_RUN_ID": f"{job_id}-1"}
    assert len(record["lineage"]["inputs"]) == 2
    wait_for(lambda: team.clients.s3.list_objects_v2(Bucket=team.runtime.buckets.logs,
                                                     Prefix=f"jobs/{job_id}/").get("KeyCount"), 10, "log upload")
