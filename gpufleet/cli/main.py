"""``gpufleet``: validate, synthesize, deploy and operate the platform."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
from rich.table import Table

from gpufleet.cli.context import console
from gpufleet.cli.options import config_option, handle_errors, json_option, out_option, target_option
from gpufleet.config import load_config

if TYPE_CHECKING:
    from gpufleet.deploy import Interruption

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="gpufleet")
def cli(debug: bool) -> None:
    """gpufleet: a self-hosted GPU ML platform on your own AWS account, or locally against emulated AWS."""


@cli.command()
@config_option
@handle_errors
def validate(config_path: Path) -> None:
    """Check the platform config and list every problem."""
    cfg = load_config(config_path)
    click.echo(f"{config_path}: valid ({len(cfg.teams)} team(s): {', '.join(cfg.team_names)})")


@cli.command()
@config_option
@target_option
@out_option
@json_option
@handle_errors
def synth(config_path: Path, target: str | None, outdir: Path, as_json: bool) -> None:
    """Write cdktf.out/stacks/<stack>/cdk.tf.json for the platform and every team."""
    from gpufleet.app import synth_app
    from gpufleet.cli.context import resolve_target

    cfg = load_config(config_path)
    started = time.monotonic()
    with console.status("synthesizing stacks…"):
        result = synth_app(cfg, resolve_target(target, for_deploy=False), outdir)
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"outdir": str(outdir), "stacks": result.stacks, "seconds": round(seconds, 2)}))
        return
    table = Table(title=f"synthesized into {outdir}/stacks in {seconds:.1f} s")
    table.add_column("stack")
    table.add_column("resources", justify="right")
    for name, count in result.stacks.items():
        table.add_row(name, str(count))
    console.print(table)


def _run_action(action: str, config_path: Path, target: str | None, outdir: Path, stacks: tuple[str, ...]) -> None:
    from gpufleet.cli.context import resolve_target
    from gpufleet.cli.progress import TerraformProgress
    from gpufleet.deploy import Interruption, run_stacks
    from gpufleet.workspace import workspace

    cfg = load_config(config_path)
    resolved = resolve_target(target, for_deploy=True)
    if resolved.local:
        from gpufleet.local.differences import print_local_differences

        print_local_differences(console)
    interruption = Interruption()
    with TerraformProgress(console) as progress, ThreadPoolExecutor(1, thread_name_prefix=action) as pool:
        run = pool.submit(run_stacks, cfg, resolved, workspace(), outdir, action,  # type: ignore[arg-type]
                          stacks, progress, interruption=interruption)
        _, outcomes = _wait_interruptible(run, interruption, action)
    table = Table(title=f"{action} summary ({resolved.kind})")
    for col in ("stack", "added", "changed", "destroyed", "seconds"):
        table.add_column(col, justify="left" if col == "stack" else "right")
    for o in outcomes:
        r = o.result
        table.add_row(o.stack, str(r.added), str(r.changed), str(r.removed), f"{o.seconds:.0f}")
    console.print(table)


def _wait_interruptible(run: Future[T], interruption: Interruption, action: str) -> T:
    """The run's result. Ctrl-C (SIGINT reaches only this process: Terraform runs in its own session) asks
    ``interruption`` to stop: the first lets the stacks being applied finish, the second stops Terraform."""
    while True:
        try:
            return run.result()
        except KeyboardInterrupt:
            running = ", ".join(interruption.running()) or "the current step"
            if interruption.request():
                click.echo(f"{action}: stopping after {running} (Terraform finishes what it is creating, so "
                           "nothing is left half-made); Ctrl-C again to stop Terraform at once", err=True)
            else:
                click.echo(f"{action}: stopping Terraform in {running} now", err=True)


def _stack_command(action: str, help_text: str) -> None:
    @cli.command(name=action, help=help_text)
    @config_option
    @target_option
    @out_option
    @click.argument("stacks", nargs=-1)
    @handle_errors
    def command(config_path: Path, target: str | None, outdir: Path, stacks: tuple[str, ...]) -> None:
        _run_action(action, config_path, target, outdir, stacks)


_stack_command("plan", "Show what Terraform would change in STACKS (default: all), in dependency order.")
_stack_command("deploy", "Apply STACKS (default: all): platform first, then teams.")
_stack_command("destroy", "Destroy STACKS (default: all): teams first, then the platform.")


@cli.command()
@config_option
@target_option
@handle_errors
def bootstrap(config_path: Path, target: str | None) -> None:
    """Create the versioned, encrypted Terraform state bucket named in platform.state_backend."""
    import boto3

    from gpufleet.bootstrap import bootstrap_state_bucket
    from gpufleet.cli.context import resolve_target
    from gpufleet.local import emulator
    from gpufleet.workspace import workspace

    cfg = load_config(config_path)
    resolved = resolve_target(target, for_deploy=True)
    region = (cfg.platform.state_backend.region if cfg.platform.state_backend else None) or cfg.platform.region
    dr_region = cfg.platform.dr_region or region
    if resolved.local:
        emu = emulator.find(workspace())
        assert emu is not None  # resolve_target started it
        s3, s3_dr = boto3.client("s3", **emu.boto_kwargs(region)), boto3.client("s3", **emu.boto_kwargs(dr_region))
        iam = boto3.client("iam", **emu.boto_kwargs(region))
    else:
        s3, s3_dr = boto3.client("s3", region_name=region), boto3.client("s3", region_name=dr_region)
        iam = boto3.client("iam", region_name=region)
    bucket = bootstrap_state_bucket(cfg, s3, tls_only=not resolved.local, s3_dr=s3_dr, iam=iam)
    console.print(f"state bucket {bucket}: versioned, SSE-KMS, private, owner-enforced ({resolved.kind})")


def _register_subcommands() -> None:
    from gpufleet.cli.audit_cmd import audit
    from gpufleet.cli.demo_cmd import demo
    from gpufleet.cli.dr_cmd import dr
    from gpufleet.cli.endpoint_cmd import endpoint
    from gpufleet.cli.fleet_cmd import fleet
    from gpufleet.cli.job_cmd import job
    from gpufleet.cli.local_cmd import local
    from gpufleet.cli.model_cmd import model
    from gpufleet.cli.nodes_cmd import nodes
    from gpufleet.cli.team_cmd import team

    for group in (local, team, job, model, endpoint, fleet, nodes, demo, dr, audit):
        cli.add_command(group)


_register_subcommands()


def main() -> None:
    from gpufleet.callrecord import RECORD_ENV, ROLE_ENV
    from gpufleet.target import TARGET_ENV
    from gpufleet.workspace import calls_dir, workspace

    # Local mode always records its calls for `gpufleet audit`; the operator CLI runs as the operator role.
    if (os.environ.get(TARGET_ENV) or "local").strip().lower() == "local":
        os.environ.setdefault(RECORD_ENV, str(calls_dir(workspace())))
        os.environ.setdefault(ROLE_ENV, "operator")
    cli(prog_name="gpufleet")


if __name__ == "__main__":
    main()
