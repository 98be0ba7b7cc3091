"""Claiming a job from a queue message: every decision is a conditional write on the jobs table.

- QUEUED/INTERRUPTED -> RUNNING, attempts + 1: this host becomes node 0 (rank 0) and, for multi-node
  jobs, writes the rendezvous address in the same write, so exactly one host wins rank 0.
- RUNNING multi-node job with room: this host appends itself to ``nodes`` (its slot is the index).
- RUNNING but not heartbeated for ``stale_after_s``: its agent died; take it over as a new attempt.
- RUNNING and alive: someone else has it; look again once it could have gone stale.
- QUEUED/INTERRUPTED/stale after ``max_attempts`` claims, or on the last receive the queue's redrive
  allows (a crash now would move the message to the DLQ behind the record's back): a poison job (it
  keeps killing or losing its host). It ends FAILED with why, ``dead_letter`` set, and its message goes
  to the DLQ: the record is the truth, the DLQ (and its alarm) tells the operators. Whoever next
  receives a message of a FAILED ``dead_letter`` job moves it there, so a failed send is retried.

Which message comes to be claimed (high priority first, with a starvation guard) is decided in
``queues`` by the rule in ``gpufleet.schema.priority``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from gpufleet.agent.identity import Identity
from gpufleet.aws import AwsClients
from gpufleet.errors import UserInputError
from gpufleet.ports import free_port
from gpufleet.schema import JOB_CLAIMABLE, JOB_FINAL
from gpufleet.schema.job_spec import JobSpec, parse_job_spec
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.schema.training_settings import TrainingSettings
from gpufleet.store.dynamo import Record, age_s, now_iso
from gpufleet.store.jobs import get_job, update_job

log = logging.getLogger("gpufleet.agent.claim")


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    slot: int
    spec: JobSpec
    rendezvous: str | None     # "addr:port" of node 0, for multi-node jobs


@dataclass(frozen=True)
class Skip:
    """The message is not ours to run: what to do with it instead."""

    action: Literal["delete", "release", "defer", "dead-letter"]
    reason: str
    delay_s: int = 0


def _fail_bad_job(clients: AwsClients, runtime: TeamRuntime, rec: Record, reason: str) -> Skip:
    update_job(clients, runtime, rec["job_id"], {"status": "FAILED", "reason": reason, "finished_at": now_iso()},
               expect_status=[rec["status"]], expect_attempts=rec.get("attempts", 0))
    log.warning("job failed before it ran", extra={"job_id": rec["job_id"], "reason": reason})
    return Skip("delete", reason)


def _give_up(clients: AwsClients, runtime: TeamRuntime, rec: Record, settings: TrainingSettings,
             stale_hb: str | None, why: str) -> Skip | None:
    """End a job that has used its attempts; None when the record moved meanwhile (decide again)."""
    attempts = int(rec.get("attempts", 0))
    last = (f"its agent on {rec.get('claimed_by')} stopped heartbeating" if stale_hb is not None
            else str(rec.get("reason") or "interrupted"))
    reason = f"gave up after {attempts} attempts ({why}); the last one: {last}"
    cond, values = ("heartbeat_at = :hb", {":hb": stale_hb}) if stale_hb is not None else ("", {})
    if not update_job(clients, runtime, rec["job_id"], {"status": "FAILED", "reason": reason, "dead_letter": True,
                                                        "finished_at": now_iso()},
                      expect_status=[rec["status"]], expect_attempts=attempts, condition=cond, values=values,
                      removes=["publisher"]):
        return None
    log.warning("job failed: max attempts reached", extra={"job_id": rec["job_id"], "attempts": attempts})
    return Skip("dead-letter", reason)


def _validated(rec: Record, identity: Identity) -> JobSpec | str:
    try:
        spec = parse_job_spec(rec.get("spec"), f"job {rec['job_id']}")
    except UserInputError as exc:
        return "bad spec: " + "; ".join(exc.problems)
    if spec.team != identity.team:
        return f"bad spec: team {spec.team!r} is not this queue's team {identity.team!r}"
    if not (spec.source or spec.image):   # a container job's image may hold its code
        return "bad spec: no source"
    return spec


def _take(clients: AwsClients, runtime: TeamRuntime, rec: Record, spec: JobSpec, identity: Identity,
          settings: TrainingSettings, stale_hb: str | None) -> Claim | None:
    attempts = int(rec.get("attempts", 0))
    sets: Record = {"status": "RUNNING", "attempts": attempts + 1, "claimed_by": identity.instance_id,
                    "nodes": [identity.instance_id], "heartbeat_at": now_iso(), "started_at": now_iso()}
    rendezvous = None
    if spec.instance_count > 1:
        port = settings.rendezvous_port or free_port(identity.address)
        rendezvous = f"{identity.address}:{port}"
        sets["rendezvous"] = rendezvous
    cond, values = "", {}
    if stale_hb is not None:
        cond, values = "heartbeat_at = :hb", {":hb": stale_hb}
    if not update_job(clients, runtime, rec["job_id"], sets, expect_status=[rec["status"]],
                      expect_attempts=attempts, condition=cond, values=values, removes=["reason", "publisher"]):
        return None
    return Claim(rec["job_id"], attempts + 1, 0, spec, rendezvous)


def _join(clients: AwsClients, runtime: TeamRuntime, rec: Record, spec: JobSpec, identity: Identity) -> Claim | None:
    nodes = list(rec.get("nodes", []))
    ok = update_job(clients, runtime, rec["job_id"], {}, expect_status=["RUNNING"],
                    expect_attempts=int(rec["attempts"]), condition="size(nodes) = :k",
                    values={":k": len(nodes), ":me": [identity.instance_id]},
                    set_exprs=["nodes = list_append(nodes, :me)"])
    return Claim(rec["job_id"], int(rec["attempts"]), len(nodes), spec, rec.get("rendezvous")) if ok else None


def _exhausted(rec: Record, settings: TrainingSettings, receives: int, max_receives: int | None) -> str | None:
    """Why this claim must not start another attempt, if it must not."""
    if int(rec.get("attempts", 0)) >= settings.max_attempts:
        return f"the agents' training.max_attempts is {settings.max_attempts}"
    if max_receives is not None and receives >= max_receives:
        return f"its message was received {receives} times, the queue's maxReceiveCount"
    return None


def claim_job(clients: AwsClients, runtime: TeamRuntime, job_id: str, identity: Identity,
              settings: TrainingSettings, receives: int = 1, max_receives: int | None = None) -> Claim | Skip:
    """Decide on one receive of the job's message (``receives``: its ApproximateReceiveCount;
    ``max_receives``: the queue's redrive maxReceiveCount, None without one)."""
    for _ in range(5):   # a lost race re-reads the record and decides again
        rec = get_job(clients, runtime, job_id)
        if rec is None:
            return Skip("release", f"no job {job_id} in the jobs table")
        status = rec.get("status")
        if status in JOB_FINAL:
            return Skip("dead-letter" if rec.get("dead_letter") else "delete", f"job already {status}")
        spec = _validated(rec, identity)
        if isinstance(spec, str):
            return _fail_bad_job(clients, runtime, rec, spec)
        nodes = list(rec.get("nodes", []))
        stale = status == "RUNNING" and age_s(rec.get("heartbeat_at")) > settings.stale_after_s
        stale_hb = str(rec.get("heartbeat_at")) if stale else None
        exhausted = _exhausted(rec, settings, receives, max_receives) if status in JOB_CLAIMABLE or stale else None
        if exhausted:
            if given_up := _give_up(clients, runtime, rec, settings, stale_hb, exhausted):
                return given_up
            continue
        if status in JOB_CLAIMABLE or stale:
            claim = _take(clients, runtime, rec, spec, identity, settings, stale_hb)
        elif status == "RUNNING" and len(nodes) < spec.instance_count and identity.instance_id not in nodes:
            claim = _join(clients, runtime, rec, spec, identity)
        else:
            wait = settings.stale_after_s - age_s(rec.get("heartbeat_at"))
            return Skip("defer", f"job {status} on {rec.get('claimed_by')}", max(1, math.ceil(wait)))
        if claim:
            log.info("job claimed", extra={"job_id": job_id, "attempt": claim.attempt, "slot": claim.slot,
                                           "taken_over": stale})
            return claim
    return Skip("defer", "lost every race for the job", 1)


def heartbeat(clients: AwsClients, runtime: TeamRuntime, claim: Claim, metrics: dict[str, float]) -> bool:
    """Refresh heartbeat_at; False when the job is no longer ours (cancelled, or taken over)."""
    sets: Record = {"heartbeat_at": now_iso()}
    if metrics:   # from whichever node's output carries them (global rank 0's, usually)
        sets["metrics"] = metrics
    return update_job(clients, runtime, claim.job_id, sets, expect_status=["RUNNING"],
                      expect_attempts=claim.attempt)


def finish(clients: AwsClients, runtime: TeamRuntime, claim: Claim, status: str, fields: Record,
           removes: tuple[str, ...] = ()) -> bool:
    stamp = "interrupted_at" if status == "INTERRUPTED" else "finished_at"
    sets = {"status": status, stamp: now_iso(), **fields}
    return update_job(clients, runtime, claim.job_id, sets, expect_status=["RUNNING"],
                      expect_attempts=claim.attempt, removes=removes)
