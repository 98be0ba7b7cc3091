"""`gpufleet team add` edits gpufleet.yaml in place: comments and layout survive, bad input changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from gpufleet.cli.main import cli
from gpufleet.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gpufleet.yaml"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "gpufleet.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def test_team_add_keeps_every_comment_and_line_and_adds_a_valid_team(tmp_path: Path) -> None:
    path = _config(tmp_path)
    before = path.read_text()
    result = CliRunner().invoke(cli, ["team", "add", "speech", "--config", str(path), "--instance-types",
                                      "g5.xlarge,g6.xlarge", "--max-instances", "3", "--endpoint", "asr:g5.xlarge"])
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert after.startswith(before)                       # nothing above was touched: comments, flow lists, order
    assert "# added by `gpufleet team add`" in after
    assert "instance_types: [g5.xlarge, g6.xlarge]" in after
    cfg = load_config(path)
    assert cfg.team_names == ["vision", "nlp", "speech"]
    speech = cfg.team("speech")
    assert speech.training.max_instances == 3 and [e.name for e in speech.endpoints] == ["asr"]


def test_team_add_refuses_a_duplicate_name_without_touching_the_file(tmp_path: Path) -> None:
    path = _config(tmp_path)
    before = path.read_text()
    result = CliRunner().invoke(cli, ["team", "add", "vision", "--config", str(path)])
    assert result.exit_code == 2
    assert "team 'vision': already in" in result.output
    assert path.read_text() == before


def test_team_add_with_an_invalid_team_exits_2_with_the_problem_and_writes_nothing(tmp_path: Path) -> None:
    path = _config(tmp_path)
    before = path.read_text()
    result = CliRunner().invoke(cli, ["team", "add", "speech", "--config", str(path), "--instance-types", "m5.large"])
    assert result.exit_code == 2
    assert "'m5.large' is not a GPU instance type" in result.output
    assert "Traceback" not in result.output
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpufleet.yaml"]   # no temp file left behind
