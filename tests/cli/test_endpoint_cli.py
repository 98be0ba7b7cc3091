"""`gpufleet endpoint ...` against the local cloud: exit codes, JSON output, and a crashed CLI's rollout
finished by another CLI from the state in the endpoints table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpufleet.cli.main import cli
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.endpoints import EndpointTable
from tests.cli.endpoints import model_tarball, register_model
from tests.support.aws import client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_endpoint_commands_deploy_invoke_and_report_errors_with_exit_codes(
        served_team: tuple[Path, TeamRuntime], moto_server) -> None:
    _, rt = served_team
    register_model(moto_server, rt, "m", 1, model_tarball(3.0, False))
    register_model(moto_server, rt, "m", 2, model_tarball(1.0, False), status="PendingManualApproval")
    code, out = _run("endpoint", "deploy", "web", "--model", "m:2")
    assert code == 2 and "is PendingManualApproval, only Approved models deploy" in out
    code, out = _run("endpoint", "deploy", "web", "--model", "m-two")
    assert code == 2 and "is not NAME:VERSION" in out
    code, out = _run("endpoint", "deploy", "nope", "--model", "m:1")
    assert code == 2 and "has no such endpoint" in out
    code, out = _run("endpoint", "deploy", "web", "--model", "m:1", "--bake-seconds", "2", "--healthy-timeout", "90")
    assert code == 0, out
    code, out = _run("endpoint", "invoke", "web", "--data", "[[1, 2]]")
    assert code == 0 and json.loads(out.strip().splitlines()[-1]) == [9.0]
    code, out = _run("endpoint", "status", "web", "--json")
    doc = json.loads(out)
    assert doc["live"] == "blue" and doc["variants"]["blue"]["model"] == "m"
    assert doc["variants"]["blue"]["weight"] == 100
    assert doc["rollout"]["state"] == "SUCCEEDED"
    code, out = _run("endpoint", "invoke", "web")
    assert code == 2 and "pass exactly one" in out


def test_rollout_of_a_killed_cli_is_rolled_back_from_the_endpoints_table(
        served_team: tuple[Path, TeamRuntime], moto_server) -> None:
    """kill -9 the CLI while it bakes the canary; a second CLI reads the record and rolls it back."""
    _, rt = served_team
    register_model(moto_server, rt, "m", 1, model_tarball(1.0, False))
    register_model(moto_server, rt, "m", 2, model_tarball(2.0, False))
    assert _run("endpoint", "deploy", "web", "--model", "m:1", "--bake-seconds", "1", "--healthy-timeout", "90")[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "gpufleet.cli", "endpoint", "deploy", "web", "--model", "m:2",
                             "--bake-seconds", "120"], env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    table = EndpointTable(client(moto_server, "dynamodb"), rt.tables.endpoints)
    deadline = time.monotonic() + 120
    while (rec := table.get("web")) is None or (rec.rollout or {}).get("state") != "BAKING":
        assert time.monotonic() < deadline and proc.poll() is None, "the canary never started baking"
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, out = _run("endpoint", "deploy", "web", "--model", "m:2")
    assert code == 2 and "--resume" in out                   # a second deploy does not trample the first
    code, out = _run("endpoint", "rollback", "web")
    assert code == 0, out
    doc = json.loads(_run("endpoint", "status", "web", "--json")[1])
    assert doc["rollout"]["state"] == "ROLLED_BACK" and doc["live"] == "blue"
    assert doc["variants"]["green"]["weight"] == 0 and doc["variants"]["green"]["desired"] == 0
    assert doc["variants"]["blue"]["model"] == "m" and doc["variants"]["blue"]["version"] == 1
