"""`gpufleet job submit` with a priority and `gpufleet job list` with each job's queue and position, through
the real CLI against the moto server (no agent runs, so the jobs stay QUEUED)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from gpufleet.cli.main import cli
from gpufleet.local import emulator
from gpufleet.local.emulator import Emulator
from tests.cli.conftest import moto_server_root, write_runtime
from tests.support.aws import create_team_resources


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_server: Emulator) -> Path:
    root = tmp_path / ".gpufleet"
    root.mkdir()
    emulator.record_path(root).write_text(emulator.record_path(moto_server_root(moto_server)).read_text())
    team = f"a{uuid.uuid4().hex[:6]}"   # the moto server is the session's
    write_runtime(root, create_team_resources(moto_server, "jp", team))
    (tmp_path / "team").write_text(team)
    monkeypatch.setenv("GPUFLEET_HOME", str(root))
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print('hi')\n")
    return tmp_path


def _submit(workspace: Path, name: str, priority: str | None) -> Result:
    spec = {"name": name, "team": (workspace / "team").read_text(), "entry_point": "train.py"}
    if priority:
        spec["priority"] = priority
    path = workspace / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return CliRunner().invoke(cli, ["job", "submit", str(path), "--source", str(workspace / "code"), "--json"])


def test_job_list_shows_each_jobs_queue_and_the_order_an_agent_takes_them(workspace: Path) -> None:
    ids = {}
    for name, priority in (("sweep", "low"), ("first", None), ("second", "normal"), ("urgent", "high")):
        result = _submit(workspace, name, priority)
        assert result.exit_code == 0, result.output
        ids[name] = json.loads(result.output.splitlines()[-1])["job_id"]
    listed = json.loads(CliRunner().invoke(cli, ["job", "list", "--json"]).output)
    assert {j["job_id"]: (j["priority"], j["position"]) for j in listed} == {
        ids["urgent"]: ("high", 1), ids["first"]: ("normal", 2), ids["second"]: ("normal", 3), ids["sweep"]: ("low", 4)}
    table = CliRunner().invoke(cli, ["job", "list"]).output
    assert "queue" in table and "position" in table
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines() if "QUEUED" in line]
    rows = {c[0][:5]: c[2:4] for c in cells}
    assert rows == {"urgen": ["high", "1"], "first": ["normal", "2"], "secon": ["normal", "3"],
                    "sweep": ["low", "4"]}, table


def test_an_unknown_priority_is_one_line_and_exit_2(workspace: Path) -> None:
    result = _submit(workspace, "bad", "urgent")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "priority: " in result.output and "(one of high, normal, low; leave it out for normal)" in result.output
