"""Guarded rollouts against the local cloud: real serving agents, router, alarm evaluator and moto."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gpufleet.aws import AwsClients
from gpufleet.callrecord import flush_all
from gpufleet.invoke import invoke_once
from gpufleet.local.cloud import router_target_health, router_urls
from gpufleet.rollout.engine import RolledBack, Rollout, RolloutOptions
from gpufleet.rollout.fleet import read_weights
from gpufleet.schema.runtime import TeamRuntime
from gpufleet.store.endpoints import EndpointTable
from gpufleet.workspace import calls_dir
from tests.cli.endpoints import ERROR_RATE_THRESHOLD, model_tarball, register_model
from tests.support.audit import audit_team_calls, problems
from tests.support.aws import client
from tests.support.traffic import Traffic as LoopedTraffic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _rollout(root: Path, rt: TeamRuntime, emu_endpoint: str, **opts: float | str) -> Rollout:
    options = RolloutOptions(**{"bake_s": 4.0, "healthy_timeout_s": 90.0, "poll_s": 0.5, **opts})  # type: ignore[arg-type]
    return Rollout(AwsClients.create(rt.region, emu_endpoint), rt, "web", router_target_health(root, rt.team, "web"),
                   options, print)


class Traffic(LoopedTraffic[tuple[float, int]]):
    """A client calling the endpoint through the router in a loop, recording (time, status)."""

    pause_s = 0.01

    def call(self, session: Any) -> tuple[float, int]:
        status, _ = invoke_once(self.url, b"[[1, 2, 3]]", "application/json", "application/json", 10)
        return time.time(), status


def test_failing_model_trips_alarm_and_rolls_back_to_blue(served_team: tuple[Path, TeamRuntime], moto_server) -> None:
    """v1 goes live on blue; v2 (every prediction raises) is canaried on green at 10 %. The router's
    5xx metrics drive the endpoint's error-rate alarm (evaluated by the local cloud), the bake sees it and
    traffic returns to blue. The client sees errors only during the canary step, about 10 % of calls."""
    root, rt = served_team
    register_model(moto_server, rt, "m", 1, model_tarball(1.0, False))
    register_model(moto_server, rt, "m", 2, model_tarball(2.0, True))
    _rollout(root, rt, moto_server.endpoint).deploy("m", 1)
    url = router_urls(root)[f"{rt.team}/web"]
    table = EndpointTable(client(moto_server, "dynamodb"), rt.tables.endpoints)
    with Traffic(url) as traffic:
        time.sleep(2)
        with pytest.raises(RolledBack, match="alarm"):
            _rollout(root, rt, moto_server.endpoint, bake_s=60.0).deploy("m", 2)
        rolled_back_at = time.time()
        time.sleep(3)
    rec = table.get("web")
    assert rec is not None and rec.rollout is not None
    assert rec.rollout["state"] == "ROLLED_BACK" and rec.live == "blue"
    assert read_weights(client(moto_server, "elbv2"), rt.endpoints["web"]) == {"blue": 100, "green": 0}
    canary = next(h for h in rec.rollout["history"] if h["state"] == "BAKING")["at"]
    errors = [t for t, status in traffic.results if status >= 500]
    during = [s for t, s in traffic.results if canary <= t <= rolled_back_at]
    print(f"canary: {len(errors)} of {len(during)} requests failed ({len(errors) / max(1, len(during)):.1%}); "
          f"{len(traffic.results)} requests in all, alarm threshold {ERROR_RATE_THRESHOLD} %")
    assert errors, "the broken canary never answered a request"
    assert all(canary <= t <= rolled_back_at + 1.0 for t in errors)   # none before the canary or after rollback
    assert len(errors) / len(during) < 3 * 10 / 100                   # about the canary's 10 % share
    assert all(s == 200 for t, s in traffic.results if t > rolled_back_at + 1.0)
    assert len(errors) / len(traffic.results) < 10 / 100              # over the whole run: under the canary share

    # The rollout's and the serving agents' calls, judged against the team stack's real-AWS roles and network
    # (unused grants are judged by the demo e2e, which exercises every role end to end).
    flush_all()
    report = audit_team_calls(calls_dir(root), rt, root.parent / "audit", endpoints=("web",))
    assert problems(report) == []
    kinds = {r.kind: r for r in report.roles}
    assert "elasticloadbalancing:ModifyRule" in kinds["operator"].actions   # traffic shifts on the path rule
    assert {"s3:GetObject", "kms:Decrypt"} <= kinds["serving"].actions
