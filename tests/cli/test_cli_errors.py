"""Operator commands fail with one line, the next action and the right exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gpufleet.cli.main import cli
from gpufleet.local import emulator
from gpufleet.local.emulator import Emulator


@pytest.mark.parametrize("args", [["job", "list"], ["model", "list"], ["endpoint", "status", "x"],
                                  ["fleet", "status"]])
def test_commands_without_a_local_cloud_exit_1_and_say_how_to_start_it(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_HOME", str(tmp_path / ".gpufleet"))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output.strip() == "error: local cloud: it is not running (next: start it with `gpufleet local up`)"


def test_an_unknown_team_exits_2_naming_the_deployed_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          moto_server: Emulator) -> None:
    root = tmp_path / ".gpufleet"
    (root / "teams").mkdir(parents=True)
    emulator.record_path(root).write_text(emulator.record_path(Path(moto_server.log).parent).read_text())
    monkeypatch.setenv("GPUFLEET_HOME", str(root))
    result = CliRunner().invoke(cli, ["job", "list", "--team", "nope"])
    assert result.exit_code == 2
    assert "--team: 'nope' is not deployed here" in result.output and "Traceback" not in result.output


def test_a_bad_model_reference_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_HOME", str(tmp_path / ".gpufleet"))
    result = CliRunner().invoke(cli, ["model", "approve", "digits"])
    assert result.exit_code == 2 and "NAME:VERSION: 'digits' is not NAME:VERSION (e.g. digits:3)" in result.output
