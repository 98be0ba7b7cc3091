"""The rollout state machine: set the candidate variant, wait healthy, shift weights step by step while
baking, then finalize or roll back. Every transition is saved in the endpoints record first, so
``resume`` can pick up where a crashed CLI stopped.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufleet.aws import AwsClients
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.registry.export import export_endpoints
from gpufleet.rollout import fleet
from gpufleet.rollout.fleet import TargetHealth
from gpufleet.rollout.guard import slowest_detection
from gpufleet.rollout.steps import traffic_steps
from gpufleet.schema import Variant
from gpufleet.schema.runtime import EndpointRuntime, TeamRuntime
from gpufleet.store.approvals import decided_status, get_decision
from gpufleet.store.dynamo import Record
from gpufleet.store.endpoints import LEASE_TTL_S, EndpointConflict, EndpointRecord, EndpointTable, Lease, take_lease
from gpufleet.store.models import get_model_version

Report = Callable[[str], None]
log = logging.getLogger("gpufleet.rollout")
NO_ALARM_BAKE_S = 60.0   # CloudWatch seconds a step bakes when the endpoint has no alarm to size it from


@dataclass(frozen=True)
class RolloutOptions:
    strategy: str = "canary"
    canary_percent: int = 10
    linear_step: int = 25
    # How long each step watches alarms and health before moving on. None: the alarms' detection window
    # (``gpufleet.rollout.guard``), so that a bad step is caught before the next one.
    bake_s: float | None = None
    healthy_timeout_s: float = 600.0
    poll_s: float = 2.0
    capacity: int | None = None     # candidate instances; default: as many as the live variant has
    time_scale: float = 1.0         # local mode: alarms run 12x faster (gpufleet.local.alarms), so do bakes
    lease_s: float = LEASE_TTL_S


class RolledBack(RuntimeFailure):
    """The rollout tripped a guard and traffic went back to the live variant (or, on a first deploy,
    the endpoint serves nothing)."""

    def __init__(self, endpoint: str, reason: str, first_deploy: bool = False) -> None:
        outcome = (f"failed: {reason}; the endpoint serves nothing (its hosts are scaled to zero)" if first_deploy
                   else f"rolled back: {reason}")
        super().__init__(f"rollout of {endpoint}", outcome,
                         f"inspect the model, then `gpufleet endpoint status {endpoint}`")


def _other(v: Variant) -> Variant:
    return "green" if v == "blue" else "blue"


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Rollout:
    """Drives one endpoint of one team. ``report`` receives one line per step for progress output."""

    def __init__(self, access: AwsClients, runtime: TeamRuntime, endpoint: str, health: TargetHealth,
                 options: RolloutOptions | None = None, report: Report | None = None) -> None:
        if endpoint not in runtime.endpoints:
            known = ", ".join(runtime.endpoints) or "none"
            raise UserInputError([f"endpoint {endpoint!r}: not an endpoint of team {runtime.team} "
                                  f"(choose from: {known})"])
        self.access, self.runtime, self.name, self.health = access, runtime, endpoint, health
        self.ep: EndpointRuntime = runtime.endpoints[endpoint]
        self.opts = options or RolloutOptions()
        self.report = report or (lambda _line: None)
        self.owner = new_owner()
        self.table = EndpointTable(access.client("dynamodb"), runtime.tables.endpoints, on_change=self._export)

    def _export(self) -> None:
        """The registry export after each change. DR reads it, but a failed export must not stop a rollout
        step half-way: the next change (or `gpufleet dr export`) writes a whole snapshot again."""
        try:
            export_endpoints(self.access, self.runtime)
        except Exception as exc:  # any AWS or network error: the rollout itself has already been saved
            log.warning("registry export after a change to %s failed: %s", self.name, exc)
            self.report(f"warning: registry export failed ({exc}); the next change writes it again")

    # --- entry points -------------------------------------------------------------------------------
    def deploy(self, model: str, version: int, kind: str = "deploy") -> EndpointRecord:
        require_approved(self.access, self.runtime, model, version)
        rec = self.table.get_or_new(self.name)
        if rec.active_rollout:
            raise self._busy(rec.active_rollout)
        firing = fleet.firing_alarms(self.access.client("cloudwatch"), self.ep.alarms)
        if firing:
            raise RuntimeFailure(f"deploy {self.name}", f"alarm(s) already firing: {', '.join(firing)}",
                                 "wait for them to return to OK, then deploy again")
        steps = traffic_steps(self.opts.strategy, self.opts.canary_percent, self.opts.linear_step)
        live = rec.live
        first = rec.variants[live].model is None
        candidate = live if first else _other(live)
        if first:
            steps = [100]  # nothing serves yet, so there is no traffic to protect
        prev = rec.variants[candidate]
        rec.rollout = {"id": uuid.uuid4().hex[:12], "kind": kind, "strategy": self.opts.strategy, "model": model,
                       "version": version, "from_variant": live, "to_variant": candidate, "first": first,
                       "previous": {"model": prev.model, "version": prev.version},
                       "replaced": None if first else {"model": rec.variants[live].model,
                                                       "version": rec.variants[live].version},
                       "steps": steps, "step": 0, "state": "STARTING", "started_at": time.time(),
                       "bake_s": self._plan_bake(), "history": []}
        take_lease(rec.rollout, self.owner, self.opts.lease_s)
        rec.variants[candidate].model, rec.variants[candidate].version = model, version
        try:
            self._transition(rec, "STARTING", f"{model}:{version} on {candidate}"
                             + (" (first deploy)" if first else f"; live is {live}"))
        except EndpointConflict:  # another deploy started between our read and our write
            current = self.table.get_or_new(self.name)
            raise self._busy(current.active_rollout) if current.active_rollout else EndpointConflict(
                f"deploy {self.name}", "someone else changed the endpoint meanwhile", "deploy again") from None
        return self._drive(rec)

    def resume(self) -> EndpointRecord:
        rec = self.table.get(self.name)
        if rec is None or rec.active_rollout is None:
            raise UserInputError([f"endpoint {self.name}: no rollout in progress (start one with "
                                  f"`gpufleet endpoint deploy {self.name} --model NAME:VERSION`)"])
        r = rec.active_rollout
        lease = Lease.of(r)
        if lease and lease.fresh():
            raise UserInputError([f"endpoint {self.name}: rollout {r['id']} is {lease.describe()} (--resume "
                                  f"takes over only once its lease expires; wait {lease.ttl_s - lease.age_s():.0f} s "
                                  "or stop that CLI)"])
        self._take_over(rec)
        self.report(f"resuming rollout {r['id']} at {r['state']}")
        if r["state"] == "ROLLING_BACK":
            return self._roll_back(rec, str(r.get("reason", "resumed rollback")))
        return self._drive(rec)

    def rollback(self, to: tuple[str, int] | None = None, reason: str = "requested by operator") -> EndpointRecord:
        """Abort the rollout in progress; with none in progress, roll the live endpoint back to the
        version the last rollout replaced (or to ``to``) through the same guarded path as a deploy."""
        rec = self.table.get(self.name)
        if rec is not None and rec.active_rollout is not None:
            if to is not None:
                raise UserInputError([f"--to: endpoint {self.name} has a rollout in progress (roll it back "
                                      f"first with `gpufleet endpoint rollback {self.name}`, then use --to)"])
            return self._abort(rec, reason)
        if to is None:
            replaced = ((rec.rollout or {}).get("replaced") if rec else None) or {}
            if not replaced.get("model"):
                raise UserInputError([f"endpoint {self.name}: no previous version to roll back to (pass "
                                      "--to NAME:VERSION of an Approved version)"])
            to = str(replaced["model"]), int(replaced["version"])
        self.report(f"rolling back to {to[0]}:{to[1]} through a guarded rollout")
        return self.deploy(*to, kind="rollback")

    def _busy(self, r: dict[str, Any]) -> UserInputError:
        lease = Lease.of(r)
        held = f" ({lease.describe()})" if lease else ""
        return UserInputError([f"endpoint {self.name}: a rollout of {r['model']}:{r['version']} is {r['state']}"
                               f"{held} (wait for it, or finish a crashed one with `gpufleet endpoint deploy "
                               f"{self.name} --resume` or `gpufleet endpoint rollback {self.name}`)"])

    # --- the lease ----------------------------------------------------------------------------------
    def _take_over(self, rec: EndpointRecord) -> None:
        assert rec.rollout is not None
        take_lease(rec.rollout, self.owner, self.opts.lease_s)
        try:
            self.table.save(rec, export=False)
        except EndpointConflict:
            raise UserInputError([f"endpoint {self.name}: another CLI took over the rollout first (see "
                                  f"`gpufleet endpoint status {self.name}`)"]) from None

    def _abort(self, rec: EndpointRecord, reason: str) -> EndpointRecord:
        """Roll back a rollout in progress. A live owner is asked to do it (it holds the lease and may be
        moving weights right now); a crashed one's lease is taken over once it has expired."""
        r = rec.active_rollout
        assert r is not None
        lease = Lease.of(r)
        if lease is None or not lease.fresh() or lease.owner == self.owner:
            self._take_over(rec)
            return self._roll_back(rec, reason)
        r["abort_requested"] = {"by": self.owner, "reason": reason}
        try:
            self.table.save(rec, export=False)
        except EndpointConflict:
            return self._abort(self.table.get(self.name) or rec, reason)
        self.report(f"asked the owner to roll back: {lease.describe()}")
        while True:
            time.sleep(self.opts.poll_s)
            current = self.table.get(self.name)
            if current is None or current.active_rollout is None or current.rollout["id"] != r["id"]:  # type: ignore[index]
                return current or rec
            lease = Lease.of(current.active_rollout)
            if lease is None or not lease.fresh():
                self.report("the owner stopped heartbeating: taking over the rollback")
                self._take_over(current)
                return self._roll_back(current, reason)

    def _heartbeat(self, rec: EndpointRecord) -> None:
        """Renew the lease now and then; notice an operator's rollback request or a lost lease."""
        r = rec.rollout
        assert r is not None
        lease = Lease.of(r)
        if lease and lease.owner == self.owner and lease.age_s() < lease.ttl_s / 3:
            return
        take_lease(r, self.owner, self.opts.lease_s)
        try:
            self.table.save(rec, export=False)
        except EndpointConflict:
            self._reread(rec)
            self._heartbeat(rec)

    def _reread(self, rec: EndpointRecord) -> None:
        """After a conflicting write: adopt the stored record, or stop if this CLI no longer owns it."""
        current = self.table.get(self.name)
        mine = rec.rollout
        assert mine is not None
        undoing = mine["state"] in ("ROLLING_BACK", "ROLLED_BACK", "FAILED")   # already what was asked
        theirs = (current.rollout if current else None) or {}
        lease = Lease.of(theirs) if theirs else None
        if current is None or theirs.get("id") != mine["id"] or lease is None or lease.owner != self.owner:
            raise RuntimeFailure(f"rollout of {self.name}", "another CLI took over this rollout",
                                 f"follow it with `gpufleet endpoint status {self.name}`")
        rec.variants, rec.rollout, rec.revision = current.variants, current.rollout, current.revision
        request = theirs.get("abort_requested")
        if request and not undoing and theirs.get("state") != "ROLLING_BACK":
            raise _Trip(f"rollback requested by {request['by']}: {request['reason']}")

    # --- the state machine --------------------------------------------------------------------------
    def _plan_bake(self) -> float:
        """Seconds each step bakes: the alarms' detection window unless the operator chose a bake."""
        scale = self.opts.time_scale
        window = slowest_detection(self.access.client("cloudwatch"), self.ep.alarms)
        needed = (window.seconds if window else NO_ALARM_BAKE_S) / scale
        scaled = f" (local time scale 1/{scale:g}: {needed:.0f} s)" if scale != 1 else ""
        why = f"the alarms' detection window, {window.describe()}" if window else "no alarm to size it from"
        if self.opts.bake_s is None:
            self.report(f"guard: each step bakes {needed * scale:.0f} s{scaled}: {why}")
            return needed
        if self.opts.bake_s < needed:
            self.report(f"guard: warning: a bake of {self.opts.bake_s:g} s is shorter than {needed:.0f} s{scaled}, "
                        f"{why}; a failing step may be promoted before its alarm can fire")
        else:
            self.report(f"guard: each step bakes {self.opts.bake_s:g} s; {why}")
        return self.opts.bake_s

    def _drive(self, rec: EndpointRecord) -> EndpointRecord:
        r = rec.rollout
        assert r is not None
        try:
            if r["state"] in ("STARTING", "WAITING_HEALTHY"):
                self._bring_up(rec)
            if r["state"] in ("WAITING_HEALTHY", "BAKING"):
                for index in range(int(r["step"]), len(r["steps"])):
                    self._shift_and_bake(rec, index)
            return self._finalize(rec)
        except _Trip as trip:
            self._roll_back(rec, trip.reason)
            raise RolledBack(self.name, trip.reason, bool(rec.rollout and rec.rollout.get("first"))) from None

    def _bring_up(self, rec: EndpointRecord) -> None:
        r = rec.rollout
        assert r is not None
        autoscaling = self.access.client("autoscaling")
        live, cand = r["from_variant"], r["to_variant"]
        capacity = self.opts.capacity or max(1, fleet.desired_capacity(autoscaling, getattr(self.ep.asgs, live))[0])
        r["capacity"] = capacity
        deadline = time.monotonic() + self.opts.healthy_timeout_s
        if fleet.desired_capacity(autoscaling, getattr(self.ep.asgs, cand))[0] == 0:
            self._wait_drained(rec, cand, deadline)
        fleet.scale(autoscaling, getattr(self.ep.asgs, cand), capacity)
        self._transition(rec, "WAITING_HEALTHY", f"{cand}: waiting for {capacity} healthy target(s)")
        while True:
            healthy, total = self.health(cand)
            if healthy >= capacity:
                self.report(f"{cand}: {healthy}/{total} target(s) healthy")
                return
            if time.monotonic() > deadline:
                raise _Trip(f"{cand} reached {healthy}/{capacity} healthy target(s) in "
                            f"{self.opts.healthy_timeout_s:.0f} s")
            self._heartbeat(rec)
            time.sleep(self.opts.poll_s)

    def _wait_drained(self, rec: EndpointRecord, cand: Variant, deadline: float) -> None:
        """Until the candidate, scaled to zero, holds no target of its last scale-in: the ALB drains those for
        the target group's deregistration delay (30 s), the local cloud stops them within a pass. A rollout
        right after another scaled this variant in (a rollback just after a deploy) would otherwise count a
        leaving host as the candidate's healthy one, then trip the bake when it goes."""
        reported = False
        while (total := self.health(cand)[1]) > 0:
            if not reported:
                self.report(f"{cand}: waiting for {total} target(s) of its last scale-in to drain")
                reported = True
            if time.monotonic() > deadline:
                raise _Trip(f"{cand} still holds {total} target(s) of its last scale-in after "
                            f"{self.opts.healthy_timeout_s:.0f} s")
            self._heartbeat(rec)
            time.sleep(self.opts.poll_s)

    def _shift_and_bake(self, rec: EndpointRecord, index: int) -> None:
        r = rec.rollout
        assert r is not None
        live, cand, weight = r["from_variant"], r["to_variant"], int(r["steps"][index])
        weights: dict[Variant, int] = {cand: weight, live: 100 - weight} if live != cand else {live: 100,
                                                                                               _other(live): 0}
        fleet.set_weights(self.access.client("elbv2"), self.ep, weights)
        for v, w in weights.items():
            rec.variants[v].weight = w
        r["step"], r["step_started_at"] = index, time.time()
        bake_s = float(r.get("bake_s") or 0.0)
        self._transition(rec, "BAKING", f"step {index + 1}/{len(r['steps'])}: {cand} {weight}% "
                         f"(baking {bake_s:.0f} s)")
        self._bake(rec, cand, bake_s)

    def _bake(self, rec: EndpointRecord, cand: Variant, bake_s: float) -> None:
        """Watch the alarms and the candidate's targets: any alarm, or any of the candidate's targets
        gone unhealthy (not only all of them), trips the guard."""
        cloudwatch = self.access.client("cloudwatch")
        capacity = int((rec.rollout or {}).get("capacity") or 1)
        end = time.monotonic() + bake_s
        while True:
            firing = fleet.firing_alarms(cloudwatch, self.ep.alarms)
            if firing:
                raise _Trip(f"alarm {', '.join(firing)} fired")
            healthy, total = self.health(cand)
            if healthy < capacity:
                raise _Trip(f"{cand} has {healthy} healthy target(s) of the {capacity} it had ({total} registered)")
            if time.monotonic() >= end:
                return
            self._heartbeat(rec)
            time.sleep(min(self.opts.poll_s, max(0.0, end - time.monotonic())))

    def _finalize(self, rec: EndpointRecord) -> EndpointRecord:
        r = rec.rollout
        assert r is not None
        self._transition(rec, "FINALIZING", f"{r['to_variant']} is live")
        if r["from_variant"] != r["to_variant"]:
            fleet.scale(self.access.client("autoscaling"), getattr(self.ep.asgs, r["from_variant"]), 0)
        return self._transition(rec, "SUCCEEDED", f"{r['model']}:{r['version']} serves 100% on {r['to_variant']}")

    def _roll_back(self, rec: EndpointRecord, reason: str) -> EndpointRecord:
        """Traffic back to the live variant and the candidate scaled to zero. On a first deploy the
        candidate *is* the live variant: it is emptied and scaled to zero too, so the bad model serves
        nothing and the endpoint answers 503 (status FAILED) instead."""
        r = rec.rollout
        assert r is not None
        live, cand = r["from_variant"], r["to_variant"]
        r["reason"] = reason
        self._transition(rec, "ROLLING_BACK", reason)
        weights: dict[Variant, int] = {live: 100, _other(live): 0}
        fleet.set_weights(self.access.client("elbv2"), self.ep, weights)
        for v, w in weights.items():
            rec.variants[v].weight = w
        prev = r.get("previous") or {}
        rec.variants[cand].model, rec.variants[cand].version = prev.get("model"), prev.get("version")
        if live != cand or rec.variants[cand].model is None:
            fleet.scale(self.access.client("autoscaling"), getattr(self.ep.asgs, cand), 0)
        if rec.variants[live].model is None:
            return self._transition(rec, "FAILED", f"{reason}; nothing serves, {cand} scaled to zero")
        return self._transition(rec, "ROLLED_BACK", f"traffic back on {live} ({rec.variants[live].label})")

    def _transition(self, rec: EndpointRecord, state: str, detail: str) -> EndpointRecord:
        r = rec.rollout
        assert r is not None
        r["state"] = state
        r["history"] = [*r.get("history", []), {"at": round(time.time(), 3), "state": state, "detail": detail}]
        take_lease(r, self.owner, self.opts.lease_s)
        try:
            self.table.save(rec)
        except EndpointConflict:
            if state == "STARTING":
                raise
            self._reread(rec)   # raises when the lease is lost or an operator asked for a rollback
            return self._transition(rec, state, detail)
        self.report(f"{state.lower().replace('_', ' ')}: {detail}")
        return rec


class _Trip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require_approved(access: AwsClients, runtime: TeamRuntime, model: str, version: int) -> Record:
    """The model version's registry record, if the operator approved it (the approvals table, pinned to
    the artifact's sha256); else a user error saying what to do."""
    try:
        record = get_model_version(access, runtime, model, version)
    except UserInputError:
        raise UserInputError([f"--model: {model}:{version} is not in the registry "
                              "(list versions with `gpufleet model list`)"]) from None
    status = decided_status(record, get_decision(access, runtime, model, version))
    if status != "Approved":
        raise UserInputError([f"--model: {model}:{version} is {status}, only Approved models deploy "
                              f"(approve it with `gpufleet model approve {model}:{version}`)"])
    return record
