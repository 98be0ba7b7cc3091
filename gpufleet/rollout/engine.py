"""The rollout state machine: set the candidate variant, wait healthy, shift weights step by step while
baking, then finalize or roll back. Every transition is saved in the endpoints record first, so
``resume`` can pick up where a crashed CLI stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gpufleet.aws import AwsClients
from gpufleet.errors import RuntimeFailure, UserInputError
from gpufleet.registry.export import export_endpoints
from gpufleet.rollout import fleet
from gpufleet.rollout.fleet import TargetHealth
from gpufleet.rollout.steps import traffic_steps
from gpufleet.schema import Variant
from gpufleet.schema.runtime import EndpointRuntime, TeamRuntime
from gpufleet.store.approvals import decided_status, get_decision
from gpufleet.store.dynamo import Record
from gpufleet.store.endpoints import EndpointRecord, EndpointTable
from gpufleet.store.models import get_model_version

Report = Callable[[str], None]


@dataclass(frozen=True)
class RolloutOptions:
    strategy: str = "canary"
    canary_percent: int = 10
    linear_step: int = 25
    bake_s: float = 60.0            # how long each step watches alarms and health before moving on
    healthy_timeout_s: float = 600.0
    poll_s: float = 2.0
    capacity: int | None = None     # candidate instances; default: as many as the live variant has


class RolledBack(RuntimeFailure):
    """The rollout tripped a guard and traffic went back to the live variant."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"rollout of {endpoint}", f"rolled back: {reason}",
                         f"inspect the model, then `gpufleet endpoint status {endpoint}`")


def _other(v: Variant) -> Variant:
    return "green" if v == "blue" else "blue"


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
        self.table = EndpointTable(access.client("dynamodb"), runtime.tables.endpoints,
                                   on_change=lambda: export_endpoints(access, runtime))

    # --- entry points -------------------------------------------------------------------------------
    def deploy(self, model: str, version: int) -> EndpointRecord:
        require_approved(self.access, self.runtime, model, version)
        rec = self.table.get_or_new(self.name)
        if rec.active_rollout:
            r = rec.active_rollout
            raise UserInputError([f"endpoint {self.name}: a rollout of {r['model']}:{r['version']} is "
                                  f"{r['state']} (finish it with `gpufleet endpoint deploy {self.name} --resume`"
                                  f" or `gpufleet endpoint rollback {self.name}`)"])
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
        rec.rollout = {"id": uuid.uuid4().hex[:12], "strategy": self.opts.strategy, "model": model,
                       "version": version, "from_variant": live, "to_variant": candidate,
                       "previous": {"model": prev.model, "version": prev.version}, "steps": steps,
                       "step": 0, "state": "STARTING", "started_at": time.time(),
                       "bake_s": self.opts.bake_s, "history": []}
        rec.variants[candidate].model, rec.variants[candidate].version = model, version
        self._transition(rec, "STARTING", f"{model}:{version} on {candidate}"
                         + (" (first deploy)" if first else f"; live is {live}"))
        return self._drive(rec)

    def resume(self) -> EndpointRecord:
        rec = self.table.get(self.name)
        if rec is None or rec.active_rollout is None:
            raise UserInputError([f"endpoint {self.name}: no rollout in progress (start one with "
                                  f"`gpufleet endpoint deploy {self.name} --model NAME:VERSION`)"])
        self.report(f"resuming rollout {rec.rollout['id']} at {rec.rollout['state']}")  # type: ignore[index]
        if rec.active_rollout["state"] == "ROLLING_BACK":
            return self._roll_back(rec, str(rec.active_rollout.get("reason", "resumed rollback")))
        return self._drive(rec)

    def rollback(self, reason: str = "requested by operator") -> EndpointRecord:
        rec = self.table.get(self.name)
        if rec is None or rec.active_rollout is None:
            raise UserInputError([f"endpoint {self.name}: no rollout in progress to roll back (deploy the "
                                  "previous version with `gpufleet endpoint deploy --model NAME:VERSION`)"])
        return self._roll_back(rec, reason)

    # --- the state machine --------------------------------------------------------------------------
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
            raise RolledBack(self.name, trip.reason) from None

    def _bring_up(self, rec: EndpointRecord) -> None:
        r = rec.rollout
        assert r is not None
        autoscaling = self.access.client("autoscaling")
        live, cand = r["from_variant"], r["to_variant"]
        capacity = self.opts.capacity or max(1, fleet.desired_capacity(autoscaling, getattr(self.ep.asgs, live))[0])
        r["capacity"] = capacity
        fleet.scale(autoscaling, getattr(self.ep.asgs, cand), capacity)
        self._transition(rec, "WAITING_HEALTHY", f"{cand}: waiting for {capacity} healthy target(s)")
        deadline = time.monotonic() + self.opts.healthy_timeout_s
        while True:
            healthy, total = self.health(cand)
            if healthy >= capacity:
                self.report(f"{cand}: {healthy}/{total} target(s) healthy")
                return
            if time.monotonic() > deadline:
                raise _Trip(f"{cand} reached {healthy}/{capacity} healthy target(s) in "
                            f"{self.opts.healthy_timeout_s:.0f} s")
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
        self._transition(rec, "BAKING", f"step {index + 1}/{len(r['steps'])}: {cand} {weight}% "
                         f"(baking {self.opts.bake_s:.0f} s)")
        self._bake(cand)

    def _bake(self, cand: Variant) -> None:
        cloudwatch = self.access.client("cloudwatch")
        end = time.monotonic() + self.opts.bake_s
        while True:
            firing = fleet.firing_alarms(cloudwatch, self.ep.alarms)
            if firing:
                raise _Trip(f"alarm {', '.join(firing)} fired")
            healthy, total = self.health(cand)
            if healthy == 0:
                raise _Trip(f"{cand} has no healthy target ({total} registered)")
            if time.monotonic() >= end:
                return
            time.sleep(min(self.opts.poll_s, max(0.0, end - time.monotonic())))

    def _finalize(self, rec: EndpointRecord) -> EndpointRecord:
        r = rec.rollout
        assert r is not None
        self._transition(rec, "FINALIZING", f"{r['to_variant']} is live")
        if r["from_variant"] != r["to_variant"]:
            fleet.scale(self.access.client("autoscaling"), getattr(self.ep.asgs, r["from_variant"]), 0)
        return self._transition(rec, "SUCCEEDED", f"{r['model']}:{r['version']} serves 100% on {r['to_variant']}")

    def _roll_back(self, rec: EndpointRecord, reason: str) -> EndpointRecord:
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
        if live != cand:
            fleet.scale(self.access.client("autoscaling"), getattr(self.ep.asgs, cand), 0)
        return self._transition(rec, "ROLLED_BACK", f"traffic back on {live} ({rec.variants[live].label})")

    def _transition(self, rec: EndpointRecord, state: str, detail: str) -> EndpointRecord:
        r = rec.rollout
        assert r is not None
        r["state"] = state
        r["history"] = [*r.get("history", []), {"at": round(time.time(), 3), "state": state, "detail": detail}]
        self.table.save(rec)
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
