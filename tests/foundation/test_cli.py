"""The CLI's contract: one line per problem and exit 2 on bad input, exit 1 with a next step on failures,
never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gpufleet.cli.main import cli
from tests.foundation.test_config import EXAMPLE, example


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def validate(data: dict[str, Any], tmp_path: Path) -> tuple[int, str]:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return run("validate", "--config", str(cfg))


def test_validate_accepts_the_example() -> None:
    code, out = run("validate", "--config", str(EXAMPLE))
    assert code == 0 and "valid (2 team(s): vision, nlp)" in out


def test_validate_lists_problems_and_exits_2_without_traceback(tmp_path: Path) -> None:
    data = example()
    data["teams"][1]["training"]["instance_types"] = ["g5.xlarg", "p9.huge"]
    code, out = validate(data, tmp_path)
    assert code == 2
    assert out.splitlines() == [
        "teams[1].training.instance_types[0]: 'g5.xlarg' is not a GPU instance type (did you mean 'g5.xlarge'?)",
        "teams[1].training.instance_types[1]: 'p9.huge' is not a GPU instance type (use a GPU type such as "
        "'g5.xlarge')",
    ]
    assert "Traceback" not in out


def test_validate_reports_field_errors_and_cross_field_problems_in_one_run(tmp_path: Path) -> None:
    data = example()
    data["platform"]["region"] = "us-east-l"
    data["teams"][0]["training"]["instance_types"] = ["g5.xlarg"]
    data["teams"][1]["name"] = "vision"
    code, out = validate(data, tmp_path)
    assert code == 2
    assert out.splitlines() == [
        "platform.region: 'us-east-l' is not an AWS region (did you mean 'us-east-1'?)",
        "teams[0].training.instance_types[0]: 'g5.xlarg' is not a GPU instance type (did you mean 'g5.xlarge'?)",
        "teams[1].name: 'vision' is already used by teams[0] (team names must be unique)",
    ]


def test_unknown_stack_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_HOME", str(tmp_path / ".gpufleet"))
    monkeypatch.setenv("TERRAFORM_BINARY", "terraform")
    from gpufleet.config import load_config
    from gpufleet.deploy import select_stacks

    cfg = load_config(EXAMPLE)
    assert select_stacks(cfg, ["vision", "platform"], "destroy") == ["team-vision", "platform"]
    with pytest.raises(Exception) as info:
        select_stacks(cfg, ["robots"], "deploy")
    assert "stack 'robots': not in the config (choose from platform, team-vision, team-nlp)" in str(info.value)


def test_missing_terraform_is_a_runtime_failure_with_a_next_step(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_HOME", str(tmp_path / ".gpufleet"))
    monkeypatch.setenv("TERRAFORM_BINARY", "no-such-terraform")
    code, out = run("plan", "--config", str(EXAMPLE), "--target", "aws", "--out", str(tmp_path / "out"), "platform")
    assert code == 1
    assert "the terraform CLI is not on PATH (next: install Terraform >= 1.5 or set TERRAFORM_BINARY)" in out


def test_synth_json_reports_stacks_and_resource_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_HOME", str(tmp_path / ".gpufleet"))
    code, out = run("synth", "--config", str(EXAMPLE), "--out", str(tmp_path / "out"), "--json")
    assert code == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    assert list(report["stacks"]) == ["platform", "team-vision", "team-nlp"]
    assert all(count > 0 for count in report["stacks"].values())


def test_bad_mirror_setting_names_the_variable_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpufleet.errors import UserInputError
    from gpufleet.terraform.cliconfig import find_mirror, write_cli_config

    monkeypatch.setenv("TF_PLUGIN_MIRROR", str(tmp_path / "empty"))
    with pytest.raises(UserInputError) as info:
        find_mirror()
    assert info.value.problems[0].startswith(f"TF_PLUGIN_MIRROR: {tmp_path / 'empty'} holds no")
    monkeypatch.delenv("TF_PLUGIN_MIRROR")
    text = write_cli_config(tmp_path).read_text()
    mirror = find_mirror()
    assert mirror is not None, "no provider mirror found: set TF_PLUGIN_MIRROR on this machine"
    assert f'path    = "{mirror}"' in text and "disable_checkpoint = true" in text
