"""Jobs fail in every way a user can make them fail; each ends FAILED with a reason, the agent goes on."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest

from gpufleet.jobs import cancel_job
from gpufleet.ports import free_port
from gpufleet.store.dynamo import now_iso
from gpufleet.store.jobs import put_new_job
from gpufleet.store.wake import wake_agents
from tests.training.badspecs import fuzzed_specs
from tests.training.conftest import SCRIPTS, Team, processes_with_env, stop_agent, wait_for


def _put_raw_job(team: Team, job_id: str, spec: object) -> None:
    put_new_job(team.clients, team.runtime, {"job_id": job_id, "status": "QUEUED", "attempts": 0, "spec": spec,
                                             "created_at": now_iso()})
    team.clients.sqs.send_message(QueueUrl=team.runtime.queue_url, MessageBody=json.dumps({"job_id": job_id}))
    wake_agents(team.clients.sqs, team.runtime, "normal")   # as a submit does


def test_bad_specs_failing_scripts_and_poison_messages_fail_cleanly_and_the_agent_keeps_serving(
        team: Team, start_agent) -> None:
    health_port = free_port()
    agent = start_agent("host-f", health_port=health_port)
    fuzzed = {f"fuzz-{i}": spec for i, spec in enumerate(fuzzed_specs(team.runtime.team, 16))}
    for job_id, spec in fuzzed.items():
        _put_raw_job(team, job_id, spec)
    team.clients.sqs.send_message(QueueUrl=team.runtime.queue_url, MessageBody="not a job message")
    crashing = team.submit(SCRIPTS, name="crash", entry_point="fail.py")
    missing_code = team.submit(SCRIPTS, name="nocode", entry_point="fail.py")
    team.clients.s3.delete_object(Bucket=team.runtime.buckets.artifacts, Key=f"code/{missing_code}/source.tar.gz")
    too_long = team.submit(SCRIPTS, name="slow", entry_point="sleep.py", max_runtime_s=3)

    for job_id, spec in fuzzed.items():
        job = team.wait_status(job_id, ("FAILED",), timeout_s=180)
        assert job["reason"].startswith("bad spec: "), (spec, job["reason"])
        assert "Traceback" not in job["reason"] and "\n" not in job["reason"]
    job = team.wait_status(crashing, ("FAILED", "SUCCEEDED"), timeout_s=180)
    assert job["reason"].startswith("the script exited with code 3; last lines:\n")
    assert job["reason"].endswith("\nloading data\nthe last words before failing")
    job = team.wait_status(missing_code, ("FAILED", "SUCCEEDED"), timeout_s=180)
    assert job["reason"].startswith("inputs: source s3://") and "does not exist" in job["reason"]
    job = team.wait_status(too_long, ("FAILED", "SUCCEEDED"), timeout_s=180)
    assert job["reason"] == "max runtime of 3s exceeded"
    assert not processes_with_env("GPUFLEET_JOB_ID", too_long)

    dlq = wait_for(lambda: team.clients.sqs.receive_message(QueueUrl=team.runtime.dlq_url).get("Messages"),
                   120, "the poison message in the DLQ")
    assert dlq[0]["Body"] == "not a job message"

    good = team.submit(SCRIPTS, name="after", entry_point="sleep.py", hyperparameters={"seconds": 0.1})
    assert team.wait_status(good, ("FAILED", "SUCCEEDED"), timeout_s=180)["status"] == "SUCCEEDED"

    def settled() -> dict[str, Any] | None:
        # The agent counts a job after writing its final status, so /healthz may lag the table briefly.
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as resp:
            health: dict[str, Any] = json.load(resp)
        return health if health["job"] is None and health["jobs_run"] >= 4 else None

    health = wait_for(settled, 10, "the agent to count the 4 jobs that ran")
    assert health["healthy"]
    assert agent.proc.poll() is None


def test_cancel_stops_a_running_job_and_removes_its_message(team: Team, start_agent) -> None:
    agent = start_agent("host-x")
    job_id = team.submit(SCRIPTS, name="cancel-me", entry_point="sleep.py")
    wait_for(lambda: "sleeping" in agent.job_log(), 120, "the job to start")
    assert cancel_job(team.clients, team.runtime, job_id)["status"] == "CANCELLED"
    wait_for(lambda: not processes_with_env("GPUFLEET_JOB_ID", job_id), 30, "the job's processes to stop")
    wait_for(lambda: '"job cancelled"' in agent.agent_log(), 10, "the agent to settle the cancellation")
    attrs = team.clients.sqs.get_queue_attributes(QueueUrl=team.runtime.queue_url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert team.job(job_id)["status"] == "CANCELLED"


def test_sigterm_stops_the_agent_cleanly_and_hands_the_job_back(team: Team, start_agent) -> None:
    agent = start_agent("host-t")
    job_id = team.submit(SCRIPTS, name="handback", entry_point="sleep.py")
    wait_for(lambda: "sleeping" in agent.job_log(), 120, "the job to start")
    assert stop_agent(agent) == 0
    assert not processes_with_env("GPUFLEET_JOB_ID", job_id)
    job = team.job(job_id)
    assert (job["status"], job["attempts"], job["reason"]) == ("INTERRUPTED", 1, "the agent was stopped")
    msgs = team.clients.sqs.receive_message(QueueUrl=team.runtime.queue_url, WaitTimeSeconds=1,
                                            AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert json.loads(msgs[0]["Body"]) == {"job_id": job_id}
    assert msgs[0]["Attributes"]["ApproximateReceiveCount"] == "1"   # a fresh message: no step toward the DLQ
    lines = [json.loads(line) for line in agent.agent_log().splitlines() if line.startswith("{")]
    assert lines[-1]["event"] == "training agent stopped" and all("level" in line for line in lines)


def test_disk_full_while_preparing_fails_the_job_with_its_reason_and_the_next_job_runs(
        team: Team, start_agent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real full disk: the agent's work root is a 64 KiB tmpfs and the job's channel holds 1 MiB. The job
    ends FAILED (not RUNNING until stale) with the OS error; once space is freed the next job succeeds."""
    disk = tmp_path / "host-disk" / "ml"
    disk.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        team.clients.s3.put_object(Bucket=team.runtime.buckets.data, Key="big/data.bin", Body=b"x" * 2**20)
        agent = start_agent("host-disk")
        job_id = team.submit(SCRIPTS, name="big", entry_point="sleep.py", hyperparameters={"seconds": 0.1},
                             channels={"training": f"s3://{team.runtime.buckets.data}/big/"})
        job = team.wait_status(job_id, ("FAILED", "SUCCEEDED"), timeout_s=120)
        assert job["status"] == "FAILED" and "No space left on device" in job["reason"], job
        assert job["reason"].startswith("preparing the job on host-disk: ")
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)   # the operator frees space
        good = team.submit(SCRIPTS, name="after", entry_point="sleep.py", hyperparameters={"seconds": 0.1})
        assert team.wait_status(good, ("FAILED", "SUCCEEDED"), timeout_s=120)["status"] == "SUCCEEDED"
        assert agent.proc.poll() is None
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_a_health_port_in_use_stops_the_agent_with_one_clear_line(team: Team, start_agent) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = start_agent("host-port", health_port=port)
        assert agent.proc.wait(timeout=60) == 1
    log = agent.log_path.read_text()
    assert "Traceback" not in log and f"health: could not listen on port {port}: Address already in use" in log
