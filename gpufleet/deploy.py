"""Synthesize, then plan, deploy or destroy stacks in dependency order; write team runtime configs.

The CLI is a thin layer over these functions, which tests call directly.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpufleet.app import SynthResult, synth_app
from gpufleet.config import PlatformConfig
from gpufleet.errors import Interrupted, UserInputError
from gpufleet.schema import RUNTIME_OUTPUT
from gpufleet.schema.runtime import TeamRuntime, parse_runtime
from gpufleet.target import Target
from gpufleet.terraform.runner import EventSink, RunResult, StackRunner
from gpufleet.workspace import teams_dir

Action = Literal["plan", "deploy", "destroy"]


class Interruption:
    """Ctrl-C during ``run_stacks``, in two steps. The first lets the stacks Terraform is applying finish and
    starts no more: Terraform's own graceful stop cancels the AWS calls in flight, so a resource being created
    can exist without being in the state, and the next deploy then fails on it (a bucket name already
    taken). The second stops Terraform at once anyway (``StackRunner.interrupt``)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = False
        self._running: set[StackRunner] = set()
        self._lock = threading.Lock()

    def request(self) -> bool:
        """Ask for a stop; True the first time (finish what runs), False after (stop Terraform now)."""
        if not self.requested.is_set():
            self.requested.set()
            return True
        with self._lock:
            self.forced = True
            running = list(self._running)
        for runner in running:
            runner.interrupt()
        return False

    def running(self) -> list[str]:
        with self._lock:
            return sorted(r.stack for r in self._running)

    def track(self, runner: StackRunner) -> None:
        with self._lock:
            self._running.add(runner)
            forced = self.forced
        if forced:
            runner.interrupt()

    def untrack(self, runner: StackRunner) -> None:
        with self._lock:
            self._running.discard(runner)



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
               parallelism: int | None = None, region: str | None = None,
               interruption: Interruption | None = None) -> tuple[SynthResult, list[StackOutcome]]:
    """Synthesize all stacks, then run ``action`` on the chosen ones, writing runtime configs after deploys.

    Team stacks depend only on the platform, so each wave of them runs in parallel (most of an apply is
    the provider waiting on AWS); a failed stack lets its siblings finish, then its failure is raised.
    ``region`` other than the platform's is a disaster-recovery rebuild (gpufleet.dr): its runtime configs
    go to ``teams/<region>/``. Once ``interruption`` is requested, no further wave starts.
    """
    synth = synth_app(cfg, target, outdir, region)
    rebuilt = region if region and region != cfg.platform.region else None
    workers = parallelism or int(os.environ.get("GPUFLEET_PARALLELISM", "4"))
    waves = stack_waves(select_stacks(cfg, stacks, action))
    _init_all([s for wave in waves for s in wave], workspace, outdir, workers)
    outcomes: list[StackOutcome] = []
    for index, wave in enumerate(waves):
        if interruption is not None and interruption.requested.is_set():
            _raise_interrupted(action, outcomes, [s for w in waves[index:] for s in w])
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wave)))) as pool:
            futures = [pool.submit(_run_stack, stack, action, workspace, outdir, sink, rebuilt, interruption)
                       for stack in wave]
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


def _raise_interrupted(action: Action, done: list[StackOutcome], skipped: list[str]) -> None:
    finished = ", ".join(o.stack for o in done) or "no stack"
    raise Interrupted(action, f"interrupted after {finished}; not started: {', '.join(skipped)}",
                      f"rerun `gpufleet {action}` to finish (each stack's state is saved)")


def _run_stack(stack: str, action: Action, workspace: Path, outdir: Path, sink: EventSink | None,
               rebuilt: str | None = None, interruption: Interruption | None = None) -> StackOutcome:
    runner = StackRunner(outdir / "stacks" / stack, workspace)
    if interruption is None:
        return _run_stack_with(runner, action, workspace, sink, rebuilt)
    interruption.track(runner)
    try:
        return _run_stack_with(runner, action, workspace, sink, rebuilt)
    finally:
        interruption.untrack(runner)


def _run_stack_with(runner: StackRunner, action: Action, workspace: Path, sink: EventSink | None,
                    rebuilt: str | None) -> StackOutcome:
    started, stack = time.monotonic(), runner.stack
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
