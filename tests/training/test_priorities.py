"""Job priorities with a real training agent on the moto server: high drains first, low is not starved.

Each test holds the agent on a blocker job (a long sleep), queues the others behind it, then cancels the
blocker, so every queued message is in SQS when the agent chooses: the order is the rule's, not timing's.
The order is read from each job's `started_at` (set when the agent claims it), not from a status snapshot: an
idle agent takes the next job within about a second, so a job that ran quickly may already be followed by another.
"""

from __future__ import annotations

from typing import Any

from gpufleet.errors import UserInputError
from gpufleet.jobs import cancel_job, list_jobs
from tests.training.conftest import SCRIPTS, Team

SLEEP = {"entry_point": "sleep.py"}


def _hold_agent(team: Team) -> str:
    blocker = team.submit(SCRIPTS, name="blocker", hyperparameters={"seconds": 600}, **SLEEP)
    team.wait_status(blocker, ("RUNNING",))
    return blocker


def _started_before(team: Team, job_ids: list[str], job_id: str) -> list[str]:
    """Those of `job_ids` the agent claimed before `job_id` (which it has claimed)."""
    mark = team.job(job_id)["started_at"]
    return [j for j in job_ids if (started := team.job(j).get("started_at")) and started < mark]


def _cancel_waiting(team: Team, job_ids: list[str]) -> None:
    """Cancel what is left; a job may finish between reading its status and cancelling it (the agent drains them)."""
    for job_id in job_ids:
        try:
            cancel_job(team.clients, team.runtime, job_id)
        except UserInputError as exc:
            assert "nothing to cancel" in str(exc), exc


def test_high_priority_job_submitted_behind_ten_normal_ones_starts_next(team: Team, start_agent: Any) -> None:
    start_agent("host-a")
    blocker = _hold_agent(team)
    normals = [team.submit(SCRIPTS, name=f"normal-{i}", hyperparameters={"seconds": 0}, **SLEEP) for i in range(10)]
    high = team.submit(SCRIPTS, name="urgent", priority="high", hyperparameters={"seconds": 0}, **SLEEP)
    listed = {j["job_id"]: j for j in list_jobs(team.clients, team.runtime, status="QUEUED")}
    assert listed[high]["priority"] == "high" and listed[high]["position"] == 1
    assert [listed[n]["position"] for n in normals] == list(range(2, 12))
    assert {listed[n]["priority"] for n in normals} == {"normal"}

    cancel_job(team.clients, team.runtime, blocker)
    team.wait_status(high, ("RUNNING", "SUCCEEDED"))
    assert _started_before(team, normals, high) == [], "no normal job started before it"
    assert team.wait_status(high, ("SUCCEEDED",))["spec"]["priority"] == "high"
    _cancel_waiting(team, normals)


def test_low_priority_job_is_not_starved_by_high_ones(team: Team, start_agent: Any) -> None:
    start_agent("host-a", starvation_guard_rounds=2)
    blocker = _hold_agent(team)   # taking it (normal) passes low over once
    low = team.submit(SCRIPTS, name="sweep", priority="low", hyperparameters={"seconds": 0}, **SLEEP)
    highs = [team.submit(SCRIPTS, name=f"urgent-{i}", priority="high", hyperparameters={"seconds": 0}, **SLEEP)
             for i in range(4)]
    cancel_job(team.clients, team.runtime, blocker)
    team.wait_status(low, ("RUNNING", "SUCCEEDED"))
    assert _started_before(team, highs, low) == highs[:1], "low ran after one high job: passed over twice, it was due"
    team.wait_status(low, ("SUCCEEDED",))
    _cancel_waiting(team, highs)
