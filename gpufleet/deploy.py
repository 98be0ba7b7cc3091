"""Synthesize, then plan, deploy or destroy stacks in dependency order; write team runtime configs.

The CLI is a thin layer over these functions, which tests call directly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpufleet.app import SynthResult, synth_app
from gpufleet.config import PlatformConfig
from gpufleet.errors import UserInputError
from gpufleet.schema import RUNTIME_OUTPUT
from gpufleet.schema.runtime import TeamRuntime, parse_runtime
from gpufleet.target import Target
from gpufleet.terraform.runner import EventSink, RunResult, StackRunner
from gpufleet.workspace import teams_dir

Action = Literal["plan", "deploy", "destroy"]



@dataclass(frozen=True)
class StackOutcome:
    stack: str
    result: RunResult
    seconds: float


def stack_order(cfg: PlatformConfig) -> list[str]:
    """Deploy order: the platform first, then each team."""
    return ["platform"] + [f"team-{t.name}" for t in cfg.teams]


def select_stacks(cfg: PlatformConfig, requested: Sequence[str], action: Action) -> list[str]:
    """The requested stacks (``platform``, ``team-x`` or plain ``x``) in dependency order; all if none."""
    order = stack_order(cfg)
    wanted = [s if s in order else f"team-{s}" for s in requested]
    unknown = [r for r, w in zip(requested, wanted, strict=True) if w not in order]
    if unknown:
        raise UserInputError([f"stack {u!r}: not in the config (choose from {', '.join(order)})" for u in unknown])
    chosen = [s for s in order if not wanted or s in wanted]
    return list(reversed(chosen)) if action == "destroy" else chosen


def stack_waves(stacks: Sequence[str]) -> list[list[str]]:
    """Stacks in waves that may run side by side: the platform alone, then all teams (reversed for destroy)."""
    waves: list[list[str]] = []
    for stack in stacks:
        is_team = stack.startswith("team-")
        if waves and waves[-1][0].startswith("team-") == is_team:
            waves[-1].append(stack)
        else:
            waves.append([stack])
    return waves


def run_stacks(cfg: PlatformConfig, target: Target, workspace: Path, outdir: Path, action: Action,
               stacks: Sequence[str] = (), sink: EventSink | None = None,
               parallelism: int | None = None, region: str | None = None) -> tuple[SynthResult, list[StackOutcome]]:
    """Synthesize all stacks, then run ``action`` on the chosen ones, writing runtime configs after deploys.

    Team stacks depend only on the platform, so each wave of them runs in parallel (most of an apply is
    the provider waiting on AWS); a failed stack lets its siblings finish, then its failure is raised.
    ``region`` other than the platform's is a disaster-recovery rebuild (gpufleet.dr): its runtime configs
    go to ``teams/<region>/``.
    """
    synth = synth_app(cfg, target, outdir, region)
    rebuilt = region if region and region != cfg.platform.region else None
    workers = parallelism or int(os.environ.get("GPUFLEET_PARALLELISM", "4"))
    waves = stack_waves(select_stacks(cfg, stacks, action))
    _init_all([s for wave in waves for s in wave], workspace, outdir, workers)
    outcomes: list[StackOutcome] = []
    for wave in waves:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wave)))) as pool:
            futures = [pool.submit(_run_stack, stack, action, workspace, outdir, sink, rebuilt) for stack in wave]
        failures = [f.exception() for f in futures if f.exception() is not None]
        outcomes += [f.result() for f in futures if f.exception() is None]
        if failures:
            raise failures[0]  # type: ignore[misc]
    return synth, outcomes


def _init_all(stacks: list[str], workspace: Path, outdir: Path, workers: int) -> None:
    """``terraform init`` every stack up front, side by side: init needs no other stack's outputs, so a team
    stack's init no longer waits for the platform's apply."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(stacks)))) as pool:
        for future in [pool.submit(StackRunner(outdir / "stacks" / s, workspace).init) for s in stacks]:
            future.result()


def _run_stack(stack: str, action: Action, workspace: Path, outdir: Path, sink: EventSink | None,
               rebuilt: str | None = None) -> StackOutcome:
    started = time.monotonic()
    runner = StackRunner(outdir / "stacks" / stack, workspace)
    if action == "plan":
        result = runner.plan(sink)
    elif action == "deploy":
        result = runner.apply(sink)
        if stack.startswith("team-"):
            write_team_runtime(workspace, runner.outputs(), stack, rebuilt)
    else:
        result = runner.destroy(sink)
        if stack.startswith("team-"):
            (teams_dir(workspace, rebuilt) / f"{stack.removeprefix('team-')}.json").unlink(missing_ok=True)
    return StackOutcome(stack, result, time.monotonic() - started)


def write_team_runtime(workspace: Path, outputs: dict[str, object], stack: str,
                       rebuilt_region: str | None = None) -> TeamRuntime | None:
    raw = outputs.get(RUNTIME_OUTPUT)
    if raw is None:
        return None
    runtime = parse_runtime(json.loads(raw) if isinstance(raw, str) else raw, f"{stack} output {RUNTIME_OUTPUT}")
    path = teams_dir(workspace, rebuilt_region) / f"{runtime.team}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(runtime.to_json())
    tmp.replace(path)
    return runtime
