"""The endpoints-table record: which model each variant serves, its weight, and the rollout in progress.

Every write is conditional on the revision read, so two operators (or a resumed CLI) never overwrite
each other's step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from gpufleet.errors import RuntimeFailure
from gpufleet.schema import VARIANTS, Variant
from gpufleet.store.dynamo import from_item, to_item

# Rollout states. ACTIVE ones mean a CLI is (or was, before crashing) driving the endpoint. FAILED: a
# first deploy that tripped its guard, so that nothing serves.
ACTIVE = ("STARTING", "WAITING_HEALTHY", "BAKING", "FINALIZING", "ROLLING_BACK")
DONE = ("SUCCEEDED", "ROLLED_BACK", "FAILED")
LEASE_TTL_S = 30.0   # a rollout whose owner has not written for this long is taken to have crashed

_ser, _de = TypeSerializer(), TypeDeserializer()


@dataclass
class VariantState:
    model: str | None = None
    version: int | None = None
    weight: int = 0

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}" if self.model else "-"


@dataclass
class EndpointRecord:
    endpoint: str
    variants: dict[Variant, VariantState] = field(
        default_factory=lambda: {"blue": VariantState(weight=100), "green": VariantState()})
    rollout: dict[str, Any] | None = None
    revision: int = 0

    @property
    def live(self) -> Variant:
        """The variant taking the traffic (blue when nothing is deployed yet)."""
        return max(VARIANTS, key=lambda v: (self.variants[v].weight, v == "blue"))

    @property
    def active_rollout(self) -> dict[str, Any] | None:
        return self.rollout if self.rollout and self.rollout.get("state") in ACTIVE else None

    def to_item(self) -> dict[str, Any]:
        doc = {"endpoint": self.endpoint, "revision": self.revision, "updated_at": time.time(),
               # An empty variant has no model/version keys at all: agents read "absent" as "serve nothing".
               "variants": {v: {"weight": s.weight, **({"model": s.model, "version": s.version} if s.model else {})}
                            for v, s in self.variants.items()}}
        if self.rollout is not None:
            doc["rollout"] = self.rollout
        return {k: _ser.serialize(to_item(v)) for k, v in doc.items()}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> EndpointRecord:
        doc = from_item({k: _de.deserialize(v) for k, v in item.items()})
        variants = {v: VariantState(**{k: doc.get("variants", {}).get(v, {}).get(k)
                                       for k in ("model", "version")},
                                    weight=int(doc.get("variants", {}).get(v, {}).get("weight") or 0))
                    for v in VARIANTS}
        return cls(doc["endpoint"], variants, doc.get("rollout"), int(doc.get("revision", 0)))


@dataclass(frozen=True)
class Lease:
    """Who drives a rollout: ``rollout["lease"] = {owner, heartbeat_at, ttl_s}``, written with every save."""

    owner: str
    heartbeat_at: float
    ttl_s: float = LEASE_TTL_S

    @classmethod
    def of(cls, rollout: dict[str, Any]) -> Lease | None:
        lease = rollout.get("lease")
        if not lease:
            return None
        return cls(str(lease["owner"]), float(lease["heartbeat_at"]), float(lease.get("ttl_s", LEASE_TTL_S)))

    def age_s(self, now: float | None = None) -> float:
        return (now or time.time()) - self.heartbeat_at

    def fresh(self, now: float | None = None) -> bool:
        return self.age_s(now) < self.ttl_s

    def describe(self) -> str:
        return f"driven by {self.owner}, last heartbeat {self.age_s():.0f} s ago (lease {self.ttl_s:.0f} s)"


def take_lease(rollout: dict[str, Any], owner: str, ttl_s: float = LEASE_TTL_S) -> None:
    """Record ``owner`` as the rollout's driver; the caller's conditional save makes it stick or fail."""
    rollout["lease"] = {"owner": owner, "heartbeat_at": time.time(), "ttl_s": ttl_s}


class EndpointConflict(RuntimeFailure):
    """Someone else wrote the record since it was read."""


class EndpointTable:
    """Reads and conditionally writes endpoint records in one team's endpoints table."""

    def __init__(self, dynamodb: Any, table: str, on_change: Callable[[], object] | None = None) -> None:
        self.ddb, self.table, self.on_change = dynamodb, table, on_change

    def get(self, endpoint: str) -> EndpointRecord | None:
        item = self.ddb.get_item(TableName=self.table, Key={"endpoint": {"S": endpoint}},
                                 ConsistentRead=True).get("Item")
        return EndpointRecord.from_item(item) if item else None

    def get_or_new(self, endpoint: str) -> EndpointRecord:
        return self.get(endpoint) or EndpointRecord(endpoint)

    def list(self) -> list[EndpointRecord]:
        pages = self.ddb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True)
        return [EndpointRecord.from_item(i) for page in pages for i in page.get("Items", [])]

    def save(self, record: EndpointRecord, export: bool = True) -> EndpointRecord:
        """Write ``record`` if nobody else wrote since it was read; bumps its revision. ``export=False``
        for writes that change nothing DR needs (a lease heartbeat)."""
        expected = record.revision
        record.revision = expected + 1
        cond = ("attribute_not_exists(endpoint)" if expected == 0 else "revision = :r")
        values = {} if expected == 0 else {":r": {"N": str(expected)}}
        try:
            self.ddb.put_item(TableName=self.table, Item=record.to_item(), ConditionExpression=cond,
                              **({"ExpressionAttributeValues": values} if values else {}))
        except self.ddb.exceptions.ConditionalCheckFailedException:
            record.revision = expected
            raise EndpointConflict(f"endpoint {record.endpoint}", "someone else changed the endpoint meanwhile",
                                   f"check `gpufleet endpoint status {record.endpoint}` and retry") from None
        if export and self.on_change:  # the registry export (gpufleet.registry.export), so DR sees every change
            self.on_change()
        return record
