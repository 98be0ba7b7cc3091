"""Agents die, hosts are reclaimed, jobs span hosts: the work survives.

The spot notice comes from a small fake IMDS (tests/training/fake_imds.py): neither this machine nor
moto serves ``spot/instance-action``. moto answers ``complete_lifecycle_action`` with HTTP 500, which
the agent must log and survive.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

from gpufleet.ports import free_port
from gpufleet.registry import list_model_versions
from tests.support.audit import audit_team_calls, problems
from tests.training.conftest import DIGITS, Team, processes_with_env, stop_agent, wait_for
from tests.training.fake_imds import FakeImds

SLOW_DIGITS = {"epochs": 6, "epoch-seconds": 1.0}


def _epochs(log: str) -> list[tuple[int, float]]:
    return [(int(e), float(t)) for e, t in re.findall(r"^epoch=(\d+) .* t=([0-9.]+)$", log, re.M)]


def test_kill_9_agent_mid_run_resumes_on_second_agent_from_checkpoint_and_registers_once(
        team: Team, start_agent) -> None:
    a = start_agent("host-a")
    job_id = team.submit(DIGITS, name="resume", hyperparameters=SLOW_DIGITS, checkpoint_interval_s=0.5)
    wait_for(lambda: len(_epochs(a.job_log())) >= 2, 120, "two epochs on host-a")
    assert processes_with_env("GPUFLEET_JOB_ID", job_id)
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    # PR_SET_PDEATHSIG: the launcher and its worker die with the agent, no orphans left training.
    wait_for(lambda: not processes_with_env("GPUFLEET_JOB_ID", job_id), 30, "job processes to exit")
    done_on_a = max(e for e, _ in _epochs(a.job_log()))

    b = start_agent("host-b")
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=180)
    assert job["status"] == "SUCCEEDED", job.get("reason")
    assert (job["attempts"], job["claimed_by"]) == (2, "host-b")
    resumed = int(re.search(r"resumed_from_epoch=(\d+)", b.job_log()).group(1))  # type: ignore[union-attr]
    assert resumed >= done_on_a - 1      # at most the epoch that was still uploading was lost
    assert min(e for e, _ in _epochs(b.job_log())) == resumed + 1
    versions = list_model_versions(team.clients, team.runtime, "resume")
    assert [(v["version"], v["lineage"]["job_id"]) for v in versions] == [(1, job_id)]


def test_spot_notice_hands_job_to_another_agent_losing_at_most_one_checkpoint_interval(
        team: Team, start_agent, tmp_path: Path) -> None:
    imds = FakeImds("host-a")
    health_port = free_port()
    try:
        a = start_agent("host-a", imds_endpoint=imds.endpoint, health_port=health_port)
        job_id = team.submit(DIGITS, name="spot", hyperparameters=SLOW_DIGITS, checkpoint_interval_s=0.5)
        wait_for(lambda: len(_epochs(a.job_log())) >= 2, 120, "two epochs on host-a")
        b = start_agent("host-b")
        noticed_at = time.time()
        imds.announce_spot_interruption()
        job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=180)
        assert job["status"] == "SUCCEEDED", job.get("reason")
        assert (job["attempts"], job["claimed_by"]) == (2, "host-b")

        epochs_a = [e for e in _epochs(a.job_log()) if e[1] <= noticed_at]
        last_epoch, last_t = epochs_a[-1]
        resumed = int(re.search(r"resumed_from_epoch=(\d+)", b.job_log()).group(1))  # type: ignore[union-attr]
        # The script checkpoints every epoch; the agent syncs on the notice: no finished epoch is lost.
        assert resumed >= last_epoch
        print(f"\nspot: work lost = {last_epoch - resumed} epochs, {noticed_at - last_t:.2f} s of an "
              f"unfinished epoch (checkpoint interval: 1 epoch = {SLOW_DIGITS['epoch-seconds']} s)")

        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as resp:
            health = json.load(resp)
        assert health["draining"] is True and health["notice"].startswith("spot")
        assert "could not complete the lifecycle action" in a.agent_log()   # moto's 500, tolerated
        assert a.proc.poll() is None
        assert stop_agent(a) == 0
        assert len(list_model_versions(team.clients, team.runtime, "spot")) == 1
    finally:
        imds.close()
    # What the handover took, judged against the team stack's real-AWS roles and network
    # (unused grants are judged by the demo e2e, which exercises every role end to end).
    report = audit_team_calls(tmp_path / "calls", team.runtime, tmp_path / "audit")
    assert problems(report) == []
    training = next(r for r in report.roles if r.kind == "training")
    assert {"sqs:SendMessage", "autoscaling:CompleteLifecycleAction"} <= training.actions   # the re-queue


def test_two_node_torchrun_job_completes_with_rank_0_agreed_in_the_jobs_table(team: Team, start_agent) -> None:
    a, b = start_agent("node-a"), start_agent("node-b")
    job_id = team.submit(DIGITS, name="ddp", instance_count=2, hyperparameters={"epochs": 3},
                         metric_definitions=[{"name": "test_accuracy", "regex": r"test_accuracy=([0-9.]+)"}])
    job = team.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout_s=240)
    # Both nodes' logs on failure: the reason holds only the tail of the node that concluded.
    assert job["status"] == "SUCCEEDED", (job.get("reason"), a.job_log()[-3000:], b.job_log()[-3000:])
    assert sorted(job["nodes"]) == ["node-a", "node-b"]
    assert job["rendezvous"].startswith("127.0.0.1:")
    assert job["claimed_by"] == job["nodes"][0]           # node 0 won the conditional write
    for agent in (a, b):
        assert "world_size=2" in agent.job_log()
    # c10d, not the claim order, places global rank 0; the node where it ran saved the model and published.
    assert "rank=0 " in {"node-a": a, "node-b": b}[job["publisher"]].job_log()
    assert job["model"] == "ddp:1" and job["metrics"]["test_accuracy"] > 0.5

    def queue_empty() -> bool:   # each node deletes its own message once its launcher has exited
        attrs = team.clients.sqs.get_queue_attributes(QueueUrl=team.runtime.queue_url, AttributeNames=["All"])
        return {attrs["Attributes"]["ApproximateNumberOfMessages"],
                attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"]} == {"0"}

    wait_for(queue_empty, 30, "both nodes to delete their messages")
