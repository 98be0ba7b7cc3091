"""Claiming a job from a queue message: every decision is a conditional write on the jobs table.

- QUEUED/INTERRUPTED -> RUNNING, attempts + 1: this host becomes node 0 (rank 0) and, for multi-node
  jobs, writes the rendezvous address in the same write, so exactly one host wins rank 0.
- RUNNING multi-node job with room: this host appends itself to ``nodes`` (its slot is the index).
- RUNNING but not heartbeated for ``stale_after_s``: its agent died; take it over as a new attempt.
- RUNNING and alive: someone else has it; look again once it could have gone stale.
"""

from __future__ import annotations

import logging
import math
import socket
from dataclasses import dataclass
from typing import Literal

from gpufleet.agent.identity import Identity
from gpufleet.aws import AwsClients
from gpufleet.errors import UserInputError
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

    action: Literal["delete", "release", "defer"]
    reason: str
    delay_s: int = 0


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _fail_bad_job(clients: AwsClients, runtime: TeamRuntime, rec: Record, reason: str) -> Skip:
    update_job(clients, runtime, rec["job_id"], {"status": "FAILED", "reason": reason, "finished_at": now_iso()},
               expect_status=[rec["status"]], expect_attempts=rec.get("attempts", 0))
    log.warning("job failed before it ran", extra={"job_id": rec["job_id"], "reason": reason})
    return Skip("delete", reason)


def _validated(rec: Record, identity: Identity) -> JobSpec | str:
    try:
        spec = parse_job_spec(rec.get("spec"), f"job {rec['job_id']}")
    except UserInputError as exc:
        return "bad spec: " + "; ".join(exc.problems)
    if spec.team != identity.team:
        return f"bad spec: team {spec.team!r} is not this queue's team {identity.team!r}"
    if not spec.source:
        return "bad spec: no source"
    return spec


def _take(clients: AwsClients, runtime: TeamRuntime, rec: Record, spec: JobSpec, identity: Identity,
          settings: TrainingSettings, stale_hb: str | None) -> Claim | None:
    attempts = int(rec.get("attempts", 0))
    sets: Record = {"status": "RUNNING", "attempts": attempts + 1, "claimed_by": identity.instance_id,
                    "nodes": [identity.instance_id], "heartbeat_at": now_iso(), "started_at": now_iso()}
    rendezvous = None
    if spec.instance_count > 1:
        port = settings.rendezvous_port or _free_port(identity.address)
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


def claim_job(clients: AwsClients, runtime: TeamRuntime, job_id: str, identity: Identity,
              settings: TrainingSettings) -> Claim | Skip:
    for _ in range(5):   # a lost race re-reads the record and decides again
        rec = get_job(clients, runtime, job_id)
        if rec is None:
            return Skip("release", f"no job {job_id} in the jobs table")
        status = rec.get("status")
        if status in JOB_FINAL:
            return Skip("delete", f"job already {status}")
        spec = _validated(rec, identity)
        if isinstance(spec, str):
            return _fail_bad_job(clients, runtime, rec, spec)
        nodes = list(rec.get("nodes", []))
        stale = status == "RUNNING" and age_s(rec.get("heartbeat_at")) > settings.stale_after_s
        if status in JOB_CLAIMABLE or stale:
            claim = _take(clients, runtime, rec, spec, identity, settings,
                          str(rec.get("heartbeat_at")) if stale else None)
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
