"""The AWS APIs unreachable for 30 s during a training job: the moto server process is paused with SIGSTOP
and resumed with SIGCONT (it keeps no state across a restart, so a pause is the outage it can survive).
Connections are still accepted by the kernel and then hang, as with a network partition.

What must hold: the agents ride it out (botocore's retries and timeouts, the claim heartbeat catching its
errors); the job is neither lost nor run twice (one attempt, SUCCEEDED), and it registers one model version.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from gpufleet.registry.models import list_model_versions
from tests.training.conftest import Team, wait_for

SCRIPTS = Path(__file__).parent / "scripts"
OUTAGE_S = 30
# Production's ratio: a job is presumed dead only well after an outage this long (600 s in production).
PATIENT = {"stale_after_s": 60.0, "visibility_timeout_s": 10}


@pytest.mark.slow
def test_a_30s_aws_outage_during_a_training_job_loses_nothing_and_registers_one_version(
        team: Team, start_agent) -> None:
    agents = [start_agent(name, **PATIENT) for name in ("host-a", "host-b")]
    job_id = team.submit(SCRIPTS, name="outage", entry_point="slow_model.py", hyperparameters={"seconds": 45})
    wait_for(lambda: any("training" in a.job_log() for a in agents), 120, "the job to start training")

    os.kill(team.emu.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_S)
    finally:
        os.kill(team.emu.pid, signal.SIGCONT)

    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=180)
    assert job["status"] == "SUCCEEDED", job.get("reason")
    assert job["attempts"] == 1, "nobody took the job over during the outage"
    versions = list_model_versions(team.clients, team.runtime, "outage")
    assert [(v["version"], v["lineage"]["job_id"]) for v in versions] == [(1, job_id)]
    assert all(a.proc.poll() is None for a in agents), "both agents are still serving the queue"
    later = team.submit(SCRIPTS, name="after", entry_point="slow_model.py", hyperparameters={"seconds": 0.1})
    assert team.wait_status(later, ("SUCCEEDED", "FAILED"), timeout_s=120)["status"] == "SUCCEEDED"
