"""The platform config: valid files load, every problem is listed one line each with path and fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.config import load_config, parse_config, parse_config_text
from gpufleet.errors import UserInputError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gpufleet.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def problems_of(data: Any) -> list[str]:
    with pytest.raises(UserInputError) as info:
        parse_config(data)
    return info.value.problems


def test_example_config_loads_with_two_teams() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.team_names == ["vision", "nlp"]
    assert cfg.platform.dr_region == "us-west-2"
    assert cfg.teams[0].training.max_gpus == 4  # 4 hosts x 1 GPU (g5.xlarge / g5.2xlarge / g6.xlarge)


def test_misspelt_instance_type_names_path_and_suggests_fix() -> None:
    data = example()
    data["teams"][1]["training"]["instance_types"] = ["g5.xlarg"]
    assert problems_of(data) == [
        "teams[1].training.instance_types[0]: 'g5.xlarg' is not a GPU instance type (did you mean 'g5.xlarge'?)"
    ]


def test_every_problem_is_listed_not_just_the_first() -> None:
    data = example()
    data["platform"]["region"] = "eu-wset-1"
    data["teams"][0]["name"] = "Vision_Team"
    data["teams"][0]["endpoints"][0]["min_instances"] = 9
    data["teams"][1]["training"]["max_instances"] = "many"
    lines = problems_of(data)
    assert len(lines) == 4, lines
    assert any(line.startswith("platform.region: 'eu-wset-1' is not an AWS region (did you mean 'eu-west-1'?)")
               for line in lines)
    assert any(line.startswith("teams[0].name: 'Vision_Team' is not DNS-safe") for line in lines)
    assert any(line.startswith("teams[0].endpoints[0]: min_instances 9 > max_instances 4") for line in lines)
    assert any(line.startswith("teams[1].training.max_instances:") and "(use a whole number)" in line
               for line in lines)


@pytest.mark.parametrize("region", ["ap-east-1", "ap-southeast-5", "us-gov-west-1", "mx-central-1", "ap-south-2",
                                    "cn-northwest-1", "eu-isoe-west-1", "il-central-1"])
def test_every_region_botocore_knows_validates_in_every_partition(region: str) -> None:
    data = example()
    data["platform"].update(region=region, dr_region=None)
    assert parse_config(data).platform.region == region


@pytest.mark.parametrize(("region", "suggestion"), [("us-east-l", "us-east-1"), ("eu-wset-1", "eu-west-1"),
                                                    ("us-gov-wset-1", "us-gov-west-1"), ("ap-esat-1", "ap-east-1")])
def test_a_near_miss_of_a_region_is_a_typo_with_a_suggestion(region: str, suggestion: str) -> None:
    data = example()
    data["platform"]["region"] = region
    (line,) = problems_of(data)
    assert line.startswith(f"platform.region: {region!r} is not an AWS region (did you mean {suggestion!r}?"), line


def test_a_well_formed_region_unlike_any_known_one_is_taken_as_newer_than_botocore() -> None:
    data = example()
    data["platform"]["region"] = "me-wonder-1"
    assert parse_config(data).platform.region == "me-wonder-1"


def test_cross_field_problems_skip_fields_that_are_themselves_invalid() -> None:
    data = example()
    data["platform"].update(region="us-east-l", dr_region="us-east-1")   # no 'dr_region equals region' guess
    data["platform"]["vpc_cidr"] = "10.0.0.0/8"                            # its own error, no subnet count
    data["platform"]["max_gpus"] = 3                                         # still over with valid fleets only
    data["teams"][1]["training"]["instance_types"] = ["g6e.xlarg"]
    lines = problems_of(data)
    assert [line.split(":")[0] for line in lines] == [
        "platform.region", "platform.vpc_cidr", "teams[1].training.instance_types[0]", "teams"], lines
    assert lines[-1].startswith("teams: training fleets may use 4 GPUs in all, over platform.max_gpus 3")


def test_unknown_field_suggests_the_close_name() -> None:
    data = example()
    data["teams"][0]["training"]["spot_percent"] = 50
    assert problems_of(data) == ["teams[0].training.spot_percent: unknown field (did you mean 'spot_percentage'?)"]


def test_missing_required_field_says_add_it() -> None:
    data = example()
    del data["teams"][0]["training"]
    assert problems_of(data) == ["teams[0].training: Field required (add it)"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["teams"].append(copy.deepcopy(d["teams"][0])),
         "teams[2].name: 'vision' is already used by teams[0] (team names must be unique)"),
        (lambda d: d["platform"].update(dr_region="us-east-1"),
         "platform.dr_region: 'us-east-1' equals platform.region"),
        (lambda d: d["platform"].update(max_gpus=3), "teams: training fleets may use 6 GPUs in all, over"),
        (lambda d: d["platform"].update(vpc_cidr="8.8.0.0/16"), "platform.vpc_cidr: '8.8.0.0/16' is not a private"),
        (lambda d: d["platform"].update(vpc_cidr="10.0.0.0/8"), "platform.vpc_cidr: '10.0.0.0/8' has prefix /8"),
        (lambda d: d["teams"][1]["training"].update(on_demand_base=5),
         "teams[1].training: on_demand_base 5 exceeds max_instances 2"),
    ],
)
def test_cross_field_checks(mutate: Any, expected: str) -> None:
    data = example()
    mutate(data)
    lines = problems_of(data)
    assert any(line.startswith(expected) for line in lines), lines


def test_yaml_syntax_error_gives_line_and_column() -> None:
    with pytest.raises(UserInputError) as info:
        parse_config_text("platform:\n  name: acme\n teams: [\n", "cfg.yaml")
    (line,) = info.value.problems
    assert line.startswith("cfg.yaml:3:") and "not valid YAML" in line


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "create it from examples/gpufleet.yaml" in info.value.problems[0]


def test_top_level_must_be_a_mapping() -> None:
    assert problems_of(["platform"])[0].startswith("gpufleet.yaml: the top level must be a mapping")


def test_endpoint_image_is_an_image_reference_or_one_line_with_the_fix() -> None:
    data = example()
    data["teams"][0]["endpoints"][0]["image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/acme-vision-images:v3"
    assert parse_config(data).teams[0].endpoints[0].image.endswith("/acme-vision-images:v3")  # type: ignore[union-attr]
    data["teams"][0]["endpoints"][0]["image"] = "Acme Vision:v3"
    assert problems_of(data) == [
        "teams[0].endpoints[0].image: 'Acme Vision:v3' is not an image reference (write a container image: "
        "<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>, or <repo>:<tag> in the team's registry)"
    ]
