"""A job's requirements.txt is installed into a cached virtualenv over the host's packages (torch is
the host's), from a wheelhouse with no index; a requirement pip cannot find fails the job with pip's line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.wheels import TINY_GREETING, TINY_MODULE, TINY_PACKAGE, build_tiny_wheelhouse
from tests.training.conftest import AgentProc, Team

SCRIPT = f"""import sys, torch, {TINY_MODULE}
print({TINY_MODULE}.GREETING, "with torch", torch.__version__, "in", sys.prefix)
"""


def _source(root: Path, requirements: str) -> Path:
    root.mkdir()
    (root / "train.py").write_text(SCRIPT)
    (root / "requirements.txt").write_text(requirements)
    return root


def _shipped_log(team: Team, job_id: str, host: str) -> str:
    body = team.clients.s3.get_object(Bucket=team.runtime.buckets.logs, Key=f"jobs/{job_id}/{host}.log")["Body"]
    return str(body.read().decode())


def test_requirements_install_from_a_wheelhouse_once_and_a_missing_one_fails_with_pips_line(
        team: Team, start_agent: Callable[..., AgentProc], tmp_path: Path) -> None:
    wheelhouse = build_tiny_wheelhouse(tmp_path)
    agent = start_agent("host-r", pip={"wheelhouse": str(wheelhouse)})
    source = _source(tmp_path / "src", f"{TINY_PACKAGE}==1.0\n")

    first = team.submit(source, name="with-deps")
    job = team.wait_status(first, ("SUCCEEDED", "FAILED"), timeout_s=180)
    assert job["status"] == "SUCCEEDED", job.get("reason")
    log = _shipped_log(team, first, "host-r")
    assert f"Successfully installed {TINY_PACKAGE}-1.0" in log
    line = next(line for line in log.splitlines() if line.startswith(TINY_GREETING))
    env_prefix = line.rsplit(" in ", 1)[1]
    assert env_prefix.startswith(str(agent.work_root / "envs"))     # ran in the job's environment ...
    import torch
    assert f"with torch {torch.__version__}" in line                 # ... over the host's torch

    again = team.submit(source, name="same-deps")
    assert team.wait_status(again, ("SUCCEEDED", "FAILED"), timeout_s=180)["status"] == "SUCCEEDED"
    log = _shipped_log(team, again, "host-r")
    assert "Successfully installed" not in log and f"in {env_prefix}" in log   # the cached environment

    missing = team.submit(_source(tmp_path / "bad", "gpufleet-no-such-package==9.9\n"), name="bad-deps")
    job = team.wait_status(missing, ("SUCCEEDED", "FAILED"), timeout_s=180)
    assert job["status"] == "FAILED"
    assert job["reason"].startswith("requirements.txt: pip failed: ERROR: ")
    assert job["reason"].endswith("ERROR: No matching distribution found for gpufleet-no-such-package==9.9")
    assert len([p for p in (agent.work_root / "envs").iterdir() if p.is_dir()]) == 1   # the failed one is gone
