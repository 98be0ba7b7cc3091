"""``gpufleet dr drill``: lose region A in the local cloud and rebuild the team in region B, measuring the RTO.

deploy A + train + serve (the demo's own steps) → stand-in replication (says so) → wipe A →
rebuild B (stacks, restore, redeploy: the RTO) → same inputs, same outputs → a second rebuild that
changes nothing (zero-change plan, records unchanged).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from gpufleet.aws import AwsClients
from gpufleet.callrecord import Caller
from gpufleet.config import PlatformConfig, parse_config
from gpufleet.demo import DEMO_CONFIG, ENDPOINT, TEAM, Say, held_out_digits, run_demo
from gpufleet.dr.rebuild import RebuildResult, plan_changes, rebuild
from gpufleet.dr.replicate import copy_bucket
from gpufleet.dr.wipe import wipe_region
from gpufleet.errors import RuntimeFailure
from gpufleet.local import emulator
from gpufleet.local.cloud import router_key, router_urls
from gpufleet.local.lifecycle import synth_dir
from gpufleet.names import resource_name
from gpufleet.registry.export import scan_models
from gpufleet.schema.runtime import TeamRuntime, load_runtime
from gpufleet.target import local_target
from gpufleet.workspace import teams_dir

REGION_A, REGION_B = "us-east-1", "us-west-2"
PROBE_ROWS = 32  # held-out digits sent before the loss and after the rebuild
STAND_IN = Caller("stand-in")  # replication and region loss are AWS's doing, not a platform role's
VERSION_FIELDS = ("model_name", "version", "status", "sha256")


@dataclass
class DrillResult:
    setup: dict[str, float] = field(default_factory=dict)   # not part of the RTO
    rto_phases: dict[str, float] = field(default_factory=dict)
    replicated_objects: int = 0
    versions_before: list[dict[str, Any]] = field(default_factory=list)
    versions_after: list[dict[str, Any]] = field(default_factory=list)
    same_outputs: bool = False
    rebuild: RebuildResult | None = None
    second: RebuildResult | None = None
    second_plan_changes: int = -1

    @property
    def rto_s(self) -> float:
        return sum(self.rto_phases.values())


def drill_config() -> PlatformConfig:
    doc = json.loads(json.dumps(DEMO_CONFIG))
    doc["platform"].update(region=REGION_A, dr_region=REGION_B)
    return parse_config(doc, "drill config")


def probe(url: str) -> list[Any]:
    from gpufleet.invoke import invoke_once

    rows = held_out_digits()[0][:PROBE_ROWS]
    status, body = invoke_once(url, json.dumps(rows).encode(), "application/json", "application/json")
    if status != 200:
        raise RuntimeFailure("dr drill", f"the endpoint answered {status}: {body[:200]!r}", "read the agent logs")
    return list(json.loads(body))


def versions(runtime: TeamRuntime, endpoint: str) -> list[dict[str, Any]]:
    records = scan_models(AwsClients.create(runtime.region, endpoint), runtime)
    return [{k: r.get(k) for k in VERSION_FIELDS} for r in records]


def _timed(phases: dict[str, float], name: str, say: Say, started: float) -> None:
    phases[name] = time.monotonic() - started
    say(f"[green]✓ {name}[/] in {phases[name]:.1f} s")


def run_drill(root: Path, say: Say, sink: Any = None) -> DrillResult:
    cfg, result = drill_config(), DrillResult()
    started = time.monotonic()
    demo = run_demo(root, say, sink, bake_s=3.0, cfg=cfg)
    _timed(result.setup, f"deploy {REGION_A} + train + serve", say, started)
    emu = emulator.find(root)
    assert emu is not None, "run_demo leaves the emulator running"
    runtime_a = load_runtime(teams_dir(root) / f"{TEAM}.json")
    before = probe(demo.url)
    result.versions_before = versions(runtime_a, emu.endpoint)

    started = time.monotonic()
    replica = resource_name(cfg.platform.name, TEAM, "artifacts-dr", "s3")
    result.replicated_objects = copy_bucket(AwsClients.create(REGION_A, emu.endpoint, STAND_IN).s3,
                                            runtime_a.buckets.artifacts, replica)
    say(f"[yellow]STAND-IN for S3 replication[/] (the emulator does not replicate): copied "
        f"{result.replicated_objects} objects {runtime_a.buckets.artifacts} → {replica}; "
        f"the rebuild reads only {replica}")
    _timed(result.setup, "replication stand-in", say, started)

    started = time.monotonic()
    deleted = wipe_region(root, emu.endpoint, [TEAM])
    say(f"region {REGION_A} lost: hosts killed, {len(deleted)} regional resources deleted "
        f"({', '.join(d.split()[0] for d in deleted[:1])}…); global names and its Terraform state untouched")
    _timed(result.setup, f"wipe {REGION_A}", say, started)

    target = local_target(root / "state", emu.endpoint)
    result.rebuild = rebuild(cfg, target, root, synth_dir(root), REGION_B, (TEAM,), say)
    result.rto_phases = dict(result.rebuild.phases)
    started = time.monotonic()
    url = _wait_router(root, router_key(TEAM, ENDPOINT, REGION_B))
    after = probe(url)
    _timed(result.rto_phases, "first answer", say, started)
    result.same_outputs = after == before
    runtime_b = load_runtime(teams_dir(root, REGION_B) / f"{TEAM}.json")
    result.versions_after = versions(runtime_b, emu.endpoint)

    started = time.monotonic()
    result.second = rebuild(cfg, target, root, synth_dir(root), REGION_B, (TEAM,), say)
    result.second_plan_changes = plan_changes(cfg, target, root, synth_dir(root), REGION_B, (TEAM,))
    _timed(result.setup, "second rebuild + plan", say, started)
    return result


def _wait_router(root: Path, key: str, timeout_s: float = 30.0) -> str:
    poll = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2), retry=retry_if_result(lambda u: u is None),
                    retry_error_callback=lambda _: None)
    url: str | None = poll(lambda: router_urls(root).get(key))
    if url is None:
        raise RuntimeFailure("dr drill", f"no local router for {key}", f"read {root / 'cloud.log'}")
    return url
