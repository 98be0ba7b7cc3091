"""``gpufleet demo``: the README's main command. The whole lifecycle, locally, with progress."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from gpufleet.cli.context import console, print_phase_table
from gpufleet.cli.options import handle_errors, json_option
from gpufleet.workspace import workspace


def _log_lines(sink: Callable[[str, dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], None]:
    """Without a terminal (CI logs) the progress bars do not draw: print every tenth applied resource instead."""
    done: dict[str, int] = {}

    def relay(stack: str, event: dict[str, Any]) -> None:
        sink(stack, event)
        if event.get("type") == "apply_complete":
            done[stack] = done.get(stack, 0) + 1
            if done[stack] % 10 == 0:
                console.print(f"  {stack}: {done[stack]} resources applied")

    return relay


@click.command()
@click.option("--bake-seconds", type=float, default=None,
              help="Canary bake time per step.  [default: the endpoint alarms' detection window]")
@json_option
@handle_errors
def demo(bake_seconds: float | None, as_json: bool) -> None:
    """Local cloud up, train digits through the queue, approve, canary-deploy, invoke; then a summary."""
    from gpufleet.cli.progress import TerraformProgress
    from gpufleet.demo import ENDPOINT, MODEL, TEAM, run_demo
    from gpufleet.local.differences import print_local_differences
    from gpufleet.local.instances import read_instances

    ws = workspace()
    started = time.monotonic()
    print_local_differences(console)
    with TerraformProgress(console) as progress:
        result = run_demo(ws, console.print, progress if console.is_terminal else _log_lines(progress), bake_seconds)
    total = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"phases": result.phases, "total_s": total, "accuracy": result.accuracy,
                               "latency_ms": result.latency_ms, "versions": result.versions,
                               "metrics": result.metrics, "url": result.url}))
        return
    print_phase_table(f"demo: {total:.0f} s in all", result.phases)
    lat = result.latency_ms
    console.print(f"[bold]{MODEL}:{result.versions['digits']}[/] on endpoint {ENDPOINT}: accuracy "
                  f"[bold]{result.accuracy:.1%}[/] on {result.samples} held-out digits; "
                  f"latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms (through the local router)")
    agents = read_instances(ws)
    console.print(f"\n[bold]What exists now[/] (in {ws}): the emulated AWS with the platform and team-{TEAM} stacks "
                  f"(applied by Terraform); {len(agents)} local agent process(es) standing in for the ASGs' "
                  f"instances; the endpoint at {result.url}/invocations.")
    console.print(f"Try: gpufleet endpoint status {ENDPOINT} · gpufleet fleet status · gpufleet model list · "
                  f"gpufleet job list")
    console.print("[bold]Tear it all down:[/] gpufleet local down")
