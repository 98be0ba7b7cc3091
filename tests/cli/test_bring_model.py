"""Bring a model: a hand-made SageMaker model.tar.gz (torch state dict + code/inference.py) is registered
with `gpufleet model register`, approved, canaried through a guarded rollout in the local cloud and invoked;
`gpufleet model package` attaches new inference code as a new version, which rolls out too."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gpufleet.cli.main import cli
from gpufleet.local.emulator import Emulator
from gpufleet.schema.runtime import TeamRuntime
from tests.support.aws import client

Served = tuple[Path, TeamRuntime]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

INFERENCE_PY = '''
import json, os
import torch


def model_fn(model_dir):
    model = torch.nn.Linear(3, 1, bias=False)
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    return model.eval()


def input_fn(body, content_type):
    return torch.tensor(json.loads(body), dtype=torch.float32)


def predict_fn(data, model):
    with torch.no_grad():
        return model(data)


def output_fn(prediction, accept):
    return json.dumps(%s)
'''
PLAIN = INFERENCE_PY % "prediction[:, 0].tolist()"
WRAPPED = INFERENCE_PY % '{"predictions": prediction[:, 0].tolist()}'


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _sagemaker_tarball(path: Path) -> Path:
    """What a SageMaker user has: model.pth and code/inference.py at the root of model.tar.gz."""
    weights = io.BytesIO()
    torch.save({"weight": torch.full((1, 3), 2.0)}, weights)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("model.pth", weights.getvalue()), ("code/inference.py", PLAIN.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _code_dir(path: Path, source: str) -> Path:
    path.mkdir()
    (path / "inference.py").write_text(source)
    return path


def _members(emu: Emulator, rt: TeamRuntime, uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = client(emu, "s3", rt.region).get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_bad_register_and_package_input_is_one_line_and_exit_2(served_team: Served, tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "nocode").mkdir()
    cases = [
        (("model", "register", "Bad_Name", "--artifact", str(empty)), "not lower-case letters"),
        (("model", "register", "m", "--artifact", str(tmp_path / "nope.tar.gz")), "no such file or folder"),
        (("model", "register", "m", "--artifact", str(empty), "--metric", "acc"), "not NAME=NUMBER"),
        (("model", "register", "m", "--artifact", str(empty), "--code", str(tmp_path / "nocode")),
         "no inference.py in it"),
        (("model", "register", "m", "--artifact", str(empty)), "no code/inference.py and no model.pt or model.pt2"),
        (("model", "register", "m", "--artifact", __file__), "not a usable model.tar.gz"),
        (("model", "package", "m:7", "--code", str(_code_dir(tmp_path / "c", PLAIN))), "no such version"),
    ]
    for args, expected in cases:
        code, out = _run(*args)
        assert code == 2, (args, out)
        assert expected in out and len(out.strip().splitlines()) == 1 and "Traceback" not in out, (args, out)


def test_sagemaker_tarball_registers_approves_rolls_out_and_serves_and_package_adds_code(
        served_team: Served, moto_server: Emulator, tmp_path: Path) -> None:
    _, rt = served_team
    tarball = _sagemaker_tarball(tmp_path / "model.tar.gz")
    code, out = _run("model", "register", "sm-linear", "--artifact", str(tarball), "--metric", "rmse=0.5",
                     "--description", "trained on a laptop", "--json")
    assert code == 0, out
    record = json.loads(out)
    assert (record["version"], record["status"]) == (1, "PendingManualApproval")
    assert record["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()   # the bytes as given
    lineage = record["lineage"]
    assert lineage["source"] == "external" and lineage["metrics"] == {"rmse": 0.5}
    assert lineage["description"] == "trained on a laptop" and "job_id" not in lineage

    code, out = _run("endpoint", "deploy", "web", "--model", "sm-linear:1")
    assert code == 2 and "only Approved models deploy" in out
    assert _run("model", "approve", "sm-linear:1")[0] == 0
    code, out = _run("endpoint", "deploy", "web", "--model", "sm-linear:1", "--strategy", "canary",
                     "--bake-seconds", "2", "--healthy-timeout", "90")
    assert code == 0, out
    code, out = _run("endpoint", "invoke", "web", "--data", "[[1, 2, 3]]")
    assert code == 0 and json.loads(out.strip().splitlines()[-1]) == [12.0]

    code, out = _run("model", "package", "sm-linear:1", "--code", str(_code_dir(tmp_path / "wrapped", WRAPPED)),
                     "--json")
    assert code == 0, out
    packaged = json.loads(out)
    assert (packaged["version"], packaged["status"]) == (2, "PendingManualApproval")
    assert packaged["lineage"]["packaged_from"] == "sm-linear:1" and packaged["lineage"]["source"] == "external"
    members = _members(moto_server, rt, packaged["artifact_uri"])
    assert members["code/inference.py"] == WRAPPED.encode() and "model.pth" in members
    assert _run("model", "approve", "sm-linear:2")[0] == 0
    code, out = _run("endpoint", "deploy", "web", "--model", "sm-linear:2", "--strategy", "canary",
                     "--bake-seconds", "2", "--healthy-timeout", "90")
    assert code == 0, out
    code, out = _run("endpoint", "invoke", "web", "--data", "[[1, 2, 3]]")
    assert code == 0 and json.loads(out.strip().splitlines()[-1]) == {"predictions": [12.0]}


def test_register_from_s3_and_from_a_model_folder_with_code(served_team: Served, moto_server: Emulator,
                                                            tmp_path: Path) -> None:
    _, rt = served_team
    tarball = _sagemaker_tarball(tmp_path / "model.tar.gz")
    client(moto_server, "s3", rt.region).put_object(Bucket=rt.buckets.data, Key="bring/model.tar.gz",
                                                    Body=tarball.read_bytes())
    code, out = _run("model", "register", "from-s3", "--artifact", f"s3://{rt.buckets.data}/bring/model.tar.gz",
                     "--json")
    assert code == 0, out
    assert json.loads(out)["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()

    folder = tmp_path / "folder"
    folder.mkdir()
    torch.save({"weight": torch.ones(1, 3)}, folder / "model.pth")
    code, out = _run("model", "register", "from-folder", "--artifact", str(folder),
                     "--code", str(_code_dir(tmp_path / "code", PLAIN)), "--json")
    assert code == 0, out
    record = json.loads(out)
    assert set(_members(moto_server, rt, record["artifact_uri"])) == {"model.pth", "code/inference.py"}
    assert record["lineage"]["inference_code_sha256"]
