"""What a rebuild synthesizes for the DR region, and the region checks of `gpufleet dr rebuild`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpufleet.app import synth_app
from gpufleet.dr.drill import drill_config
from gpufleet.dr.rebuild import check_region
from gpufleet.errors import UserInputError
from gpufleet.target import local_target


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("rebuild")
    synth_app(drill_config(), local_target(tmp / "state", None), tmp / "out", "us-west-2")
    return tmp, json.loads((tmp / "out" / "stacks" / "team-ml" / "cdk.tf.json").read_text())


def test_a_rebuild_adopts_the_replica_bucket_and_suffixes_every_global_name(
        rebuilt: tuple[Path, dict[str, Any]]) -> None:
    _, doc = rebuilt
    res = doc["resource"]
    buckets = sorted(b["bucket"] for b in res["aws_s3_bucket"].values())
    assert buckets == ["demo-ml-artifacts-dr", "demo-ml-capture-us-west-2", "demo-ml-checkpoints-us-west-2",
                       "demo-ml-data-us-west-2", "demo-ml-logs-us-west-2"]
    assert [i["id"] for i in doc["import"]] == ["demo-ml-artifacts-dr"]
    assert all(r["name"].endswith("-us-west-2") for r in res["aws_iam_role"].values())
    assert all(p["name"].endswith("-us-west-2") for p in res["aws_iam_policy"].values())
    assert "aws_s3_bucket_replication_configuration" not in res
    assert doc["data"]["aws_kms_alias"]["replica-key"]["name"] == "alias/demo/ml-dr"


def test_a_rebuild_keeps_its_state_apart_from_the_lost_regions(rebuilt: tuple[Path, dict[str, Any]]) -> None:
    tmp, doc = rebuilt
    assert doc["terraform"]["backend"]["local"]["path"] == str(tmp / "state" / "us-west-2" / "team-ml.tfstate")


@pytest.mark.parametrize(("region", "problem"), [
    ("us-east-1", "--region: 'us-east-1' is the platform's own region"),
    ("eu-west-1", "--region: 'eu-west-1' holds no replica"),
])
def test_rebuild_refuses_regions_without_a_replica(region: str, problem: str) -> None:
    with pytest.raises(UserInputError) as info:
        check_region(drill_config(), region)
    assert info.value.problems[0].startswith(problem)
